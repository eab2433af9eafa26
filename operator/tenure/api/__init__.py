"""The Tenure API: pydantic models (the contract) and the CRDs rendered from them."""
