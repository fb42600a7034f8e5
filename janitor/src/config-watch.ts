import {
  effectiveConfig,
  errorMessage,
  listServiceConfigs,
  serviceConfigEvent,
  serviceConfigSubject,
  SHARED_VARIABLES,
  type ServiceConfigEvent,
  type ServiceContext,
} from '@media-jobs/libs';

/**
 * Watches every service's config announcements and warns when another instance runs with a
 * different TTL or cleanup interval than this janitor: results would then expire (or be
 * swept) at times the other service does not expect. The instances already running when the
 * janitor starts are checked from the registry in Redis at once, not a minute later when
 * they announce again. Each disagreement is warned once.
 */
export function watchConfig(ctx: ServiceContext): ReturnType<ServiceContext['nc']['subscribe']> {
  const own = effectiveConfig(ctx.config);
  const warned = new Set<string>();
  const check = (event: ServiceConfigEvent) => {
    if (event.service === ctx.service && event.instance === ctx.instance) return;
    for (const variable of SHARED_VARIABLES) {
      const theirs = event.config[variable];
      const seen = `${event.service}/${event.instance}/${variable}=${String(theirs)}`;
      if (theirs === own[variable] || warned.has(seen)) continue;
      warned.add(seen);
      ctx.logger.warn(
        { service: event.service, instance: event.instance, variable, theirs, ours: own[variable] },
        `Config disagreement: ${event.service} (${event.instance}) runs with ${variable}=${String(theirs)}, this janitor with ${String(own[variable])}`,
      );
    }
  };
  const sub = ctx.nc.subscribe(serviceConfigSubject('*'), {
    callback: (err, msg) => {
      if (err) return;
      let parsed;
      try {
        parsed = serviceConfigEvent.safeParse(msg.json());
      } catch {
        return;
      }
      if (parsed.success) check(parsed.data);
    },
  });
  listServiceConfigs(ctx.redis).then(
    (running) => running.forEach(check),
    (err: unknown) =>
      ctx.logger.debug(
        { err: errorMessage(err) },
        'Cannot read the running services; their next announcement will do',
      ),
  );
  return sub;
}
