-- SWUpdate (built with CONFIG_HANDLER_IN_LUA and without CONFIG_EMBEDDED_LUA_HANDLER, as
-- Debian's is) runs `require("swupdate_handlers")` at start-up: this file, found on Lua's
-- package.path (/usr/share/lua/5.3/ on Debian). An image with handlers of its own keeps its
-- swupdate_handlers.lua and adds this line to it.
require("amc_swupdate")
