"""The routing worker: matches waiting visits to available, licensed providers.

PostgreSQL is the arbiter (every offer is a conditional update through ``clinical.actions``);
Redis holds only the working set, which ``workingset.rebuild`` recreates from PostgreSQL.
"""
