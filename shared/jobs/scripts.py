"""The Lua scripts that change a job record atomically in Redis (used by shared/jobs/store.py).

A job's outstanding work lives in a hash beside it (`keys.job_work`): work id → a JSON entry
with the task message that carries it, how often it was sent, and which worker started it.
A job is in the active index (`keys.ACTIVE_JOBS`, scored by its last sign of life) exactly
while it is not terminal. Every script that can end a job ends it the same way (`_END`), so
the index, the work hash and the events stay consistent, and a terminal record never changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from shared import keys
from shared.contract import TERMINAL_STATES

# The terminal states, as the contract names them: the one list the scripts read.
_TERMINAL = ", ".join(f"{state.value} = true" for state in sorted(TERMINAL_STATES))

# Shared by the scripts below. KEYS[1] job hash, KEYS[2] work hash, KEYS[3] active index,
# KEYS[4] events channel, KEYS[5] the webhook outbox's due set; ARGV[1] job id, ARGV[2] now.
# A job's end and its webhook are one step: a crash can lose neither without the other.
_PRELUDE = (
    """
local job, work, active, events, webhooks_due = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local job_id, now = ARGV[1], ARGV[2]
local terminal = {"""
    + _TERMINAL
    + """}
local function finish(state)
  redis.call('HSET', job, 'state', state, 'finished_at', now)
  redis.call('DEL', work)
  redis.call('ZREM', active, job_id)
  -- finish runs once per job: a terminal record never changes
  if redis.call('HEXISTS', job, 'webhook') == 1 then
    redis.call('ZADD', webhooks_due, 'NX', now, job_id)
  end
  redis.call('PUBLISH', events, state)
end
-- A cancelling job ends once no work that had started is left.
local function settle_cancel()
  if redis.call('HGET', job, 'state') == 'cancelling' and redis.call('HLEN', work) == 0 then
    finish('cancelled')
    return true
  end
  return false
end
"""
)

# ARGV[3] work id, ARGV[4] worker name. 1: run it; 0: drop it (done, cancelled or unknown).
START_WORK = (
    _PRELUDE
    + """
local state = redis.call('HGET', job, 'state')
if not state or terminal[state] then return 0 end
local raw = redis.call('HGET', work, ARGV[3])
if not raw then return 0 end
if state == 'cancelling' then
  redis.call('HDEL', work, ARGV[3])
  settle_cancel()
  return 0
end
local entry = cjson.decode(raw)
entry['started_by'] = ARGV[4]
entry['started_at'] = tonumber(now)
redis.call('HSET', work, ARGV[3], cjson.encode(entry))
if state == 'queued' then
  redis.call('HSET', job, 'state', 'running')
  redis.call('HSETNX', job, 'started_at', now)
  redis.call('PUBLISH', events, 'running')
end
redis.call('ZADD', active, now, job_id)
return 1
"""
)

# KEYS[6] counted batches, KEYS[7] errors list, KEYS[8] assets hash.
# ARGV[3] batch id, ARGV[4] succeeded, ARGV[5] failed, ARGV[6] n errors, errors...,
# then index/asset id pairs.
# Returns -1 already counted, -2 no such job, -3 terminal, 0 counted, 1 completed, 2 cancelled.
COMPLETE_BATCH = (
    _PRELUDE
    + """
local state = redis.call('HGET', job, 'state')
if not state then return -2 end
if terminal[state] then return -3 end
if redis.call('SADD', KEYS[6], ARGV[3]) == 0 then return -1 end
redis.call('HINCRBY', job, 'succeeded', ARGV[4])
redis.call('HINCRBY', job, 'failed', ARGV[5])
local n_errors = tonumber(ARGV[6])
for i = 7, 6 + n_errors do redis.call('RPUSH', KEYS[7], ARGV[i]) end
for i = 7 + n_errors, #ARGV, 2 do redis.call('HSET', KEYS[8], ARGV[i], ARGV[i + 1]) end
redis.call('HDEL', work, ARGV[3])
local pending = redis.call('HINCRBY', job, 'pending', -1)
if state == 'cancelling' then
  if settle_cancel() then return 2 end
elseif pending <= 0 then
  -- A job with a last step (`then`: a re-index's swap, a duplicates job's clustering) sends
  -- it now, as outstanding work like any batch; the step itself ends the job.
  local after = redis.call('HGET', job, 'then')
  if not after then
    finish('completed')
    return 1
  end
  local entry = cjson.decode(after)
  entry['sent_at'] = tonumber(now)
  redis.call('HSET', work, 'then', cjson.encode(entry))
  redis.call('HDEL', job, 'then')
  redis.call('HSET', job, 'pending', 1)
  redis.call('LPUSH', entry['queue'], entry['payload'])
end
redis.call('ZADD', active, now, job_id)
redis.call('PUBLISH', events, 'progress')
return 0
"""
)

# Ends a job that runs as one task (or fails any job). KEYS[6] errors list.
# ARGV[3] the state to end in, ARGV[4] n field/value pairs to write, pairs..., then item
# errors to append. A cancelling job ends cancelled, keeping what the work wrote.
# Returns 0 when the job had already ended.
FINISH = (
    _PRELUDE
    + """
local state = redis.call('HGET', job, 'state')
if not state or terminal[state] then return 0 end
local n_fields = tonumber(ARGV[4])
if n_fields > 0 then redis.call('HSET', job, unpack(ARGV, 5, 4 + 2 * n_fields)) end
for i = 5 + 2 * n_fields, #ARGV do redis.call('RPUSH', KEYS[6], ARGV[i]) end
if state == 'cancelling' then finish('cancelled') else finish(ARGV[3]) end
return 1
"""
)

# Work not yet started is dropped at once; started work finishes (the job is `cancelling`
# meanwhile). Returns 0 already ended (or unknown), 1 cancelling, 2 cancelled.
CANCEL = (
    _PRELUDE
    + """
local state = redis.call('HGET', job, 'state')
if not state or terminal[state] then return 0 end
if state ~= 'cancelling' then
  redis.call('HSET', job, 'state', 'cancelling')
  redis.call('PUBLISH', events, 'cancelling')
end
local entries = redis.call('HGETALL', work)
for i = 1, #entries, 2 do
  if cjson.decode(entries[i + 1])['started_by'] == nil then redis.call('HDEL', work, entries[i]) end
end
if settle_cancel() then return 2 end
return 1
"""
)

# Work that ends without counting anything (a plan that finds its job cancelling).
# ARGV[3] work id.
DROP_WORK = (
    _PRELUDE
    + """
redis.call('HDEL', work, ARGV[3])
settle_cancel()
return 1
"""
)

# Sends a work item's task again, as a new message (the watchdog found it lost). ARGV[3] work
# id, ARGV[4] the queue's list, ARGV[5] the message, ARGV[6] its task id. Returns the attempts
# so far, or -1 when the work is gone (done or dropped meanwhile).
RESEND_WORK = (
    _PRELUDE
    + """
local state = redis.call('HGET', job, 'state')
if not state or terminal[state] then return -1 end
local raw = redis.call('HGET', work, ARGV[3])
if not raw then return -1 end
local entry = cjson.decode(raw)
entry['attempts'] = (entry['attempts'] or 0) + 1
entry['started_by'] = nil
entry['started_at'] = nil
entry['sent_at'] = tonumber(now)
entry['payload'] = ARGV[5]
entry['task_id'] = ARGV[6]
redis.call('HSET', work, ARGV[3], cjson.encode(entry))
redis.call('LPUSH', ARGV[4], ARGV[5])
redis.call('ZADD', active, now, job_id)
return entry['attempts']
"""
)

# One piece of work hands over to the next (a generation to the embed workers that save its
# images, a reference search to the generation): the old entry goes, the new one comes with
# its message, in one step, so the job's pending count stays and a redelivered message of the
# old work finds nothing to start. ARGV[3] old work id, ARGV[4] new work id, ARGV[5] its
# entry, ARGV[6] the queue's list, ARGV[7] the message. 1: handed over; 0: the old work is
# gone or the job ended; 2: the job is cancelling, so the work was dropped instead.
HAND_OVER = (
    _PRELUDE
    + """
local state = redis.call('HGET', job, 'state')
if not state or terminal[state] then return 0 end
if redis.call('HDEL', work, ARGV[3]) == 0 then return 0 end
if state == 'cancelling' then
  settle_cancel()
  return 2
end
redis.call('HSET', work, ARGV[4], ARGV[5])
redis.call('LPUSH', ARGV[6], ARGV[7])
redis.call('ZADD', active, now, job_id)
return 1
"""
)

# KEYS: the queues' lists, then the unacked hash. ARGV: task ids.
# Returns the task ids found in a queue or held unacknowledged by a worker.
FIND_TASKS = """
local wanted, found = {}, {}
for _, id in ipairs(ARGV) do wanted[id] = true end
local function scan(items)
  for _, item in ipairs(items) do
    for id in pairs(wanted) do
      if string.find(item, id, 1, true) then found[#found + 1] = id; wanted[id] = nil end
    end
  end
end
for i = 1, #KEYS - 1 do scan(redis.call('LRANGE', KEYS[i], 0, -1)) end
scan(redis.call('HVALS', KEYS[#KEYS]))
return found
"""

# KEYS: idempotency key, job hash, tenant index, task queue, work hash, active index.
# ARGV: job id, body hash, ttl, created_at, task message, work entry, then the job hash's
# field/value pairs. Returns the earlier "job_id body_hash", or nil when this call made it.
CREATE_ONCE = """
local earlier = redis.call('GET', KEYS[1])
if earlier then return earlier end
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('LPUSH', KEYS[4], ARGV[5])
redis.call('HSET', KEYS[5], 'start', ARGV[6])
redis.call('ZADD', KEYS[6], ARGV[4], ARGV[1])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', ARGV[3])
return false
"""


def run(script: Any, job_id: str, *args: Any, extra_keys: Iterable[str] = ()) -> Any:
    """Runs a registered job script the way _PRELUDE reads it: KEYS job, work, active index,
    events, webhooks due (+ extra); ARGV job id, now (+ args)."""
    names = [
        keys.job(job_id),
        keys.job_work(job_id),
        keys.ACTIVE_JOBS,
        keys.events(job_id),
        keys.WEBHOOKS_DUE,
    ]
    return script(keys=[*names, *extra_keys], args=[job_id, time.time(), *args])
