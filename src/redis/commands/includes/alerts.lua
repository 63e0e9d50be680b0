--[[
  Included by every script that changes a balance or a free quota: decides the events of SPEC 13 in the
  same atomic step as the change, so that a crash cannot lose one and a retry cannot double one. Events
  ride in the journaled change (field `events`) and are stored with it by the persistence job; their id
  is derived from the change's journal id and the event type (src/lib/events.ts).

  Alarm state, so that each event fires once per crossing (alarm -> recovered -> alarm again):
    account hash  thr_bal  balance.low threshold, micro-units (absent: no balance alarms)
                  thr_q    quota.low percent (absent: no quota.low)
                  al_bal   '0' armed (the balance is at or above the threshold), '1' while balance.low
                           is raised (balance.recovered clears it), 'n' not armed yet: a new account
                           whose balance has never reached the threshold (nothing fell below it)
                  al_dep   the available balance at which balance.depleted fired (or '0' for an
                           account loaded empty: nothing to deplete); absent or '' when armed. Any
                           change that leaves more available than that re-arms it
                  ev_n     how many event-only entries of recurring steps were made (part of their ids: see
                           eventEntryId)
    quota hash    '!al:<service>'  '1' after quota.low, '2' after quota.exhausted; the hash expires with
                  the month, so quota alarms re-arm monthly ('!' is no service name's character)
  init-account loads the thresholds and derives the alarms from what it loads (eviction re-fires none).

  An event is {type = <type>, data = {<name> = <string>}}; amounts are micro-unit integer strings (the
  persistence job formats them). The functions add to a list `events` that the caller owns:
    balanceEvents(events, account, available[, alarm])     balance.low / balance.recovered; alarm: the
                                                   account's ALARM_FIELDS, when the caller read them already
    quotaEvents(events, account, quota, service, used, freeQuota[, alarm])   quota.low / quota.exhausted;
                                                   alarm: {state = the quota hash's '!al:<service>',
                                                   percent = the account's thr_q}, when read already
    depletedEvent(events, account, service, needed, available)      balance.depleted (a refusal)
    otherEvent(events, type, data)                 any other event a change carries: recharge.paid,
                                                   reservation.expired, and the place for refund.created
                                                   and grant.expired (their scripts call this)
    eventEntryId(account, base, nowMs) -> id    the journal id of an event-only entry for a step that may
                                                   recur (a refusal, a void of a held grant)
    withEvents(change, events) -> change           sets change.events when there are any
    journalEvents(keys, id, user, nowMs, events) -> change JSON or ''
        for a step that journals no change of its own (a refusal, a release): an event-only entry
        {kind = 'events', id, userId, at, events} in the journal (field 'events:<id>'), persisted like
        any change; keys = {account, activity, pending, journalIndex}
]]
--- @include "includes/int"
--- @include "includes/changed"

-- The account hash's alarm fields balanceEvents reads, in this order (a script that reads the account
-- anyway may read them in the same HMGET and pass them in).
local ALARM_FIELDS = {'thr_bal', 'al_bal', 'al_dep'}

local function balanceEvents(events, account, available, alarm)
  local a = alarm or redis.call('HMGET', account, unpack(ALARM_FIELDS))
  if a[3] and a[3] ~= '' and available > tonumber(a[3]) then redis.call('HSET', account, 'al_dep', '') end
  if not a[1] then return events end
  local threshold = tonumber(a[1])
  if available < threshold then
    if a[2] == '0' then
      redis.call('HSET', account, 'al_bal', '1')
      events[#events + 1] = {type = 'balance.low', data = {available = int(available), threshold = a[1]}}
    end
  elseif a[2] == '1' then
    redis.call('HSET', account, 'al_bal', '0')
    events[#events + 1] = {type = 'balance.recovered', data = {available = int(available), threshold = a[1]}}
  elseif a[2] ~= '0' then
    redis.call('HSET', account, 'al_bal', '0')
  end
  return events
end

local function quotaEvents(events, account, quota, service, used, freeQuota, alarm)
  if freeQuota <= 0 then return events end
  local field = '!al:' .. service
  local stateField, percentField
  if alarm then
    stateField, percentField = alarm.state, alarm.percent
  else
    stateField, percentField = redis.call('HGET', quota, field), redis.call('HGET', account, 'thr_q')
  end
  local state = tonumber(stateField or '0')
  local raised = state
  local percent = tonumber(percentField or '')
  local data = {service = service, used = int(used), freeQuota = int(freeQuota)}
  if percent and raised < 1 and used * 100 >= freeQuota * percent then
    raised = 1
    events[#events + 1] = {type = 'quota.low', data = data}
  end
  if raised < 2 and used >= freeQuota then
    raised = 2
    events[#events + 1] = {type = 'quota.exhausted', data = data}
  end
  if raised ~= state then redis.call('HSET', quota, field, int(raised)) end
  return events
end

local function depletedEvent(events, account, service, needed, available)
  local fired = redis.call('HGET', account, 'al_dep')
  if fired and fired ~= '' then return events end
  redis.call('HSET', account, 'al_dep', int(available))
  events[#events + 1] = {type = 'balance.depleted',
    data = {service = service, needed = int(needed), available = int(available)}}
  return events
end

local function otherEvent(events, type, data)
  events[#events + 1] = {type = type, data = data}
  return events
end

-- A refusal is not remembered: the same request refused again, after its alarm re-armed, fires again (and
-- a grant voided twice may fire twice). Its event-only entry needs an id of its own each time: with the
-- request's record id alone, the second entry overwrote the first in the journal, or its event was stored
-- as a repeat of the first.
local function eventEntryId(account, base, nowMs)
  return base .. '.' .. nowMs .. '.' .. redis.call('HINCRBY', account, 'ev_n', 1)
end

local function withEvents(change, events)
  if #events > 0 then change.events = events end
  return change
end

-- Unix ms -> ISO 8601 UTC, as JavaScript's toISOString (days to civil date: H. Hinnant's algorithm).
local function isoTime(ms)
  local s = math.floor(ms / 1000)
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d, math.floor(rem / 3600),
    math.floor(rem % 3600 / 60), rem % 60, ms % 1000)
end

local function journalEvents(keys, id, user, nowMs, events)
  if #events == 0 then return '' end
  local json = cjson.encode({kind = 'events', id = id, userId = user, at = isoTime(tonumber(nowMs)), events = events})
  changed(keys[1], keys[2], user, nowMs)
  redis.call('HSET', keys[3], 'events:' .. id, json)
  journaled(keys[4], user, nowMs)
  return json
end
