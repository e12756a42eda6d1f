"""Leader lease in Redis: one router decides, a standby takes over when the leader dies."""

import uuid

import redis

LEASE_KEY = "router:leader"

# Extend only if we still hold it; take it if nobody does (e.g. after Redis lost its data).
_HOLD = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """A time-limited claim on leadership that the holder renews."""

    def __init__(self, r: redis.Redis, *, seconds: int, name: str | None = None):
        self.r = r
        self.ttl_ms = seconds * 1000
        self.token = name or uuid.uuid4().hex
        self._hold = r.register_script(_HOLD)
        self._release = r.register_script(_RELEASE)

    def hold(self) -> bool:
        """Take or renew the lease; return True while this process is the leader."""
        return bool(self._hold(keys=[LEASE_KEY], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        """Give the lease up at a clean shutdown so the standby takes over at once."""
        self._release(keys=[LEASE_KEY], args=[self.token])

    def holder(self) -> str | None:
        """Return the current leader's token."""
        return self.r.get(LEASE_KEY)
