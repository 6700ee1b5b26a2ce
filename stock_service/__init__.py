"""stock_service: live inventory in Redis, changed only by Lua scripts (stock/scripts.py) and
confirmed in the MySQL ledger. The crowd is answered from memory in stock/admission.py; holds
are taken, released and committed in stock/holds.py; products are registered in
stock/catalog.py; Redis is rebuilt from the ledger in stock/rebuild.py."""
