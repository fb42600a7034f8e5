import type { JobRecord } from '@media-jobs/libs';

/** A record as the API shows it: the record, whether it came from the cache, and its links. */
export function jobView(record: JobRecord, cacheHit?: boolean): Record<string, unknown> {
  return {
    ...record,
    ...(cacheHit === undefined ? {} : { cache_hit: cacheHit }),
    links: {
      self: `/jobs/${record.id}`,
      file: `/jobs/${record.id}/file`,
      events: `/jobs/${record.id}/events`,
    },
  };
}
