"""Every write to the clinical domain, one module per subject: callers import the one they need.

Each function runs in one transaction, locks the rows it changes (visit before provider, always
in that order), refuses an illegal change with an ``ActionError`` naming the field, writes the
``VisitEvent`` and the history record, and publishes the routing event on commit. Times come from
the database's clock (``core.dbclock``); a router's writes are fenced by its lease epoch.
"""
