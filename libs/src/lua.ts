import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { redisReplyCode } from './backend-errors.js';

/**
 * A Lua script run by its SHA (EVALSHA), so the hot paths do not send the script text with
 * every call; falls back to EVAL once when Redis does not know it yet (after a restart).
 */
export class LuaScript {
  readonly sha: string;

  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (redisReplyCode(err) !== 'NOSCRIPT') throw err;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}
