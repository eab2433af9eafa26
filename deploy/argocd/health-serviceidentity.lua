-- Argo CD health check for tenure.dev/ServiceIdentity.
-- Install under argocd-cm: resource.customizations.health.tenure.dev_ServiceIdentity (see README.md).
-- Progressing: the operator has not judged this generation yet. Suspended: the ticket awaits
-- approval. Healthy: Active and Ready. Degraded: denied, failing, or revoked (a Revoked tombstone no
-- longer grants access: remove it from Git or renew it with a new approval).
local hs = {}
local function condition(obj, type)
  if obj.status == nil or obj.status.conditions == nil then return nil end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then return c end
  end
  return nil
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the Tenure operator"
  return hs
end
local generation = obj.metadata.generation or 0
local observed = obj.status.observedGeneration or 0
local phase = obj.status.phase
local ready = condition(obj, "Ready")
local valid = condition(obj, "Valid")

if phase == "Revoked" then
  local reason = "unknown"
  if obj.status.revocation ~= nil and obj.status.revocation.reason ~= nil then
    reason = obj.status.revocation.reason
  end
  hs.status = "Degraded"
  hs.message = "access revoked (" .. reason .. "); renewing it needs a new ServiceIdentity"
  return hs
end
if observed < generation then
  hs.status = "Progressing"
  hs.message = "the operator has not judged generation " .. generation .. " yet"
  return hs
end
if phase == "Pending" then
  hs.status = "Suspended"
  hs.message = "the ticket awaits approval"
  return hs
end
if phase == "Denied" then
  hs.status = "Degraded"
  hs.message = (valid ~= nil and valid.message) or "denied"
  return hs
end
if phase == "Active" then
  if ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
    local expiring = condition(obj, "ExpiringSoon")
    if expiring ~= nil and expiring.status == "True" then
      hs.message = expiring.message
    elseif valid ~= nil and valid.status == "False" then
      hs.message = valid.reason .. ": " .. valid.message
    else
      hs.message = (ready.message) or "active"
    end
    return hs
  end
  hs.status = "Degraded"
  hs.message = (ready ~= nil and (ready.reason .. ": " .. ready.message)) or "not ready"
  return hs
end
hs.status = "Progressing"
hs.message = "phase " .. phase
return hs
