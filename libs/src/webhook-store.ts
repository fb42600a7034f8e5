import type { Redis } from 'ioredis';
import { jobKey, type JobKind, type JobStatus, type WebhookAttempt } from './job-record.js';
import { LuaScript } from './lua.js';

/** Callback URLs one job generation may collect (one per distinct submission). */
export const MAX_CALLBACK_URLS = 20;
/** Attempts kept in a record: the newest. */
export const MAX_RECORDED_ATTEMPTS = 50;
/** A generation's callback set outlives its record by this much, so a late event still finds it. */
const CALLBACKS_GRACE_MS = 24 * 3_600_000;

/**
 * The callback URLs of one job generation (`created_at` in epoch ms): a Redis set beside the
 * record, not a field of it. A running worker guards each write of its job's record with the
 * exact JSON it read (compare-and-set), so a second submission that added its URL to the
 * record would make that worker drop the job; the set leaves the record alone.
 */
export function callbacksKey(kind: JobKind, id: string, createdAt: string): string {
  return `webhooks:${jobKey(kind, id)}:${Date.parse(createdAt)}`;
}

// Adds a callback URL to the set of the record's current generation, with the record's TTL
// plus a grace period; answers the record's status, so a caller that finds the job already
// ended sends that URL the event itself. 0: no such record or generation; -1: set full.
// KEYS: record, callback set. ARGV: created_at, url, max urls, grace ms.
const ADD_CALLBACK = new LuaScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return {0, ''} end
local ok, rec = pcall(cjson.decode, cur)
if not ok or type(rec) ~= 'table' or rec['created_at'] ~= ARGV[1] then return {0, ''} end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 0 and redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  return {-1, rec['status']}
end
redis.call('SADD', KEYS[2], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl + tonumber(ARGV[4])) end
return {1, rec['status']}
`);

// Appends one webhook attempt to the record's `webhooks` list and changes nothing else: the
// rest of the stored JSON is kept byte for byte (only the list is re-encoded), and so is the
// key's TTL (KEEPTTL), the expiry index being untouched. Only an ended record of the same
// generation is written: no worker writes it any more, so no compare-and-set is broken.
// The list is the record's last field; a record where it is not is left alone (-1).
// KEYS: record. ARGV: created_at, attempt JSON, max attempts kept.
const RECORD_ATTEMPT = new LuaScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local ok, rec = pcall(cjson.decode, cur)
if not ok or type(rec) ~= 'table' or rec['created_at'] ~= ARGV[1] then return 0 end
if rec['status'] ~= 'completed' and rec['status'] ~= 'failed' then return 0 end
local prefix
local list = rec['webhooks']
if list == nil then
  if string.sub(cur, -1) ~= '}' then return -1 end
  prefix = string.sub(cur, 1, -2)
  list = {}
else
  local pos, from = nil, 1
  while true do
    local i = string.find(cur, ',"webhooks":[', from, true)
    if not i then break end
    pos, from = i, i + 1
  end
  if not pos then return -1 end
  local okTail, tail = pcall(cjson.decode, '{' .. string.sub(cur, pos + 1))
  if not okTail or type(tail) ~= 'table' or type(tail['webhooks']) ~= 'table' then return -1 end
  for k, _ in pairs(tail) do if k ~= 'webhooks' then return -1 end end
  prefix = string.sub(cur, 1, pos - 1)
end
table.insert(list, cjson.decode(ARGV[2]))
while #list > tonumber(ARGV[3]) do table.remove(list, 1) end
redis.call('SET', KEYS[1], prefix .. ',"webhooks":' .. cjson.encode(list) .. '}', 'KEEPTTL')
return 1
`);

export type AddCallbackResult =
  { added: true; status: JobStatus } | { added: false; reason: 'gone' | 'full'; status?: JobStatus };

/** Adds `url` to the callbacks of this generation of the job. */
export async function addCallback(
  redis: Redis,
  kind: JobKind,
  id: string,
  createdAt: string,
  url: string,
): Promise<AddCallbackResult> {
  const [code, status] = (await ADD_CALLBACK.run(
    redis,
    [jobKey(kind, id), callbacksKey(kind, id, createdAt)],
    [createdAt, url, MAX_CALLBACK_URLS, CALLBACKS_GRACE_MS],
  )) as [number, string];
  if (code === 1) return { added: true, status: status as JobStatus };
  return code === -1
    ? { added: false, reason: 'full', status: status as JobStatus }
    : { added: false, reason: 'gone' };
}

/** The callback URLs of one generation of the job. */
export async function callbackUrls(
  redis: Redis,
  kind: JobKind,
  id: string,
  createdAt: string,
): Promise<string[]> {
  return (await redis.smembers(callbacksKey(kind, id, createdAt))).sort();
}

/**
 * Lists one attempt in the job's record. 'written'; 'gone' when the record expired, was
 * deleted or belongs to a newer generation; 'skipped' when its layout is not the one written
 * here (the attempt is then only logged).
 */
export async function recordWebhookAttempt(
  redis: Redis,
  kind: JobKind,
  id: string,
  createdAt: string,
  attempt: WebhookAttempt,
): Promise<'written' | 'gone' | 'skipped'> {
  const code = (await RECORD_ATTEMPT.run(
    redis,
    [jobKey(kind, id)],
    [createdAt, JSON.stringify(attempt), MAX_RECORDED_ATTEMPTS],
  )) as number;
  return code === 1 ? 'written' : code === 0 ? 'gone' : 'skipped';
}
