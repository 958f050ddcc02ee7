--[[
amc_swupdate.lua: SWUpdate handlers for amc model patches (the Lua handler API of SWUpdate
2022.12; loaded by swupdate_handlers.lua, which SWUpdate requires at start-up).

  amcp         a signed .amcp blob: copied out of the update into a folder of SWUpdate's TMPDIR,
               then `amc-ota update BLOB FOLDER`: amc-patch install, the health check on the
               golden utterance, amc-patch commit; when the install or the check fails,
               amc-patch rollback, and the handler returns 1, so the update (and `swupdate -i`)
               fails with the model as it was.
  amcp-golden  golden.wav or golden.check, the health check's utterance and expected text: copied
               into the same folder. `amc release --swupdate` lists them before the blob (SWUpdate
               installs images in the order of sw-description).

SWUpdate has no commit step for an image handler (it reports success once every handler
returned 0), so the handler runs the whole transaction; see docs/on-target.md, "OTA updates".
AMC_OTA names amc-ota (default /usr/libexec/amc/amc-ota), which reads /etc/amc/ota.conf.
]]

local swupdate = require("swupdate")

local OTA = os.getenv("AMC_OTA") or "/usr/libexec/amc/amc-ota"
local GOLDEN_FILES = { ["golden.wav"] = true, ["golden.check"] = true }

local function quote(text)
    return "'" .. string.gsub(text, "'", "'\\''") .. "'"
end

-- The folder the update's files are copied to: one for all handlers of this update.
local function stage()
    return swupdate.tmpdir() .. "amc"
end

local function run(command)
    local ok = os.execute(command)
    return ok == true or ok == 0
end

-- Copies the image out of the update (SWUpdate checks its sha256 as it copies) into the folder.
local function copy_out(image)
    local name = image.filename or ""
    if not string.match(name, "^[%w][%w._-]*$") then
        return nil, "'" .. name .. "' is not a plain file name"
    end
    if not run("mkdir -p " .. quote(stage())) then
        return nil, "cannot make " .. stage()
    end
    local path = stage() .. "/" .. name
    local err, why = image:copy2file(path)
    if err ~= 0 then
        return nil, "copying it to " .. path .. " failed: " .. tostring(why)
    end
    return path
end

local function golden(image)
    if not GOLDEN_FILES[image.filename] then
        swupdate.error("amc: an amcp-golden image is golden.wav or golden.check, not '" ..
                       tostring(image.filename) .. "'")
        return 1
    end
    local path, why = copy_out(image)
    if not path then
        swupdate.error("amc: " .. image.filename .. ": " .. why)
        return 1
    end
    return 0
end

local function amcp(image)
    local blob, why = copy_out(image)
    if not blob then
        swupdate.error("amc: " .. tostring(image.filename) .. ": " .. why)
        return 1
    end
    swupdate.info("amc: installing " .. image.filename .. " with " .. OTA)
    local ok = run(quote(OTA) .. " update " .. quote(blob) .. " " .. quote(stage()))
    run("rm -rf " .. quote(stage()))
    if not ok then
        swupdate.error("amc: " .. image.filename .. " was not installed (refused, or the health check " ..
                       "failed and it was rolled back)")
        return 1
    end
    swupdate.info("amc: " .. image.filename .. " installed, checked and committed")
    return 0
end

swupdate.register_handler("amcp-golden", golden, swupdate.HANDLER_MASK.IMAGE_HANDLER)
swupdate.register_handler("amcp", amcp, swupdate.HANDLER_MASK.IMAGE_HANDLER)
