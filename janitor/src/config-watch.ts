import {
  effectiveConfig,
  serviceConfigEvent,
  serviceConfigSubject,
  SHARED_VARIABLES,
  type ServiceContext,
} from '@media-jobs/libs';

/**
 * Watches every service's config announcements and warns when another instance runs with a
 * different TTL or cleanup interval than this janitor: results would then expire (or be
 * swept) at times the other service does not expect. Each disagreement is warned once.
 */
export function watchConfig(ctx: ServiceContext): ReturnType<ServiceContext['nc']['subscribe']> {
  const own = effectiveConfig(ctx.config);
  const warned = new Set<string>();
  return ctx.nc.subscribe(serviceConfigSubject('*'), {
    callback: (err, msg) => {
      if (err) return;
      let parsed;
      try {
        parsed = serviceConfigEvent.safeParse(msg.json());
      } catch {
        return;
      }
      if (!parsed.success) return;
      const event = parsed.data;
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
    },
  });
}
