"""stock_service: live inventory in Redis, changed only by Lua scripts (domain arrives in a later issue)."""
