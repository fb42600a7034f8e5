import { Router } from 'express';
import type { GatewayDeps } from '../deps.js';

/** `POST /normalize`: built in the normalization issue. */
export function normalizeRoutes(_deps: GatewayDeps): Router {
  return Router();
}
