import { Router } from 'express';
import type { GatewayDeps } from '../deps.js';

/** `/admin/*`: built in the janitor issue. */
export function adminRoutes(_deps: GatewayDeps): Router {
  return Router();
}
