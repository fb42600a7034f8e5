import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Router } from 'express';
import { openApiDocument } from '../openapi.js';
import { contentSecurityPolicy, DOCS_CONTENT_SECURITY_POLICY } from '../security-headers.js';

/** swagger-ui-dist's folder in node_modules: the page works on machines with no internet. */
const SWAGGER_DIR = (
  createRequire(import.meta.url)('swagger-ui-dist') as { getAbsoluteFSPath(): string }
).getAbsoluteFSPath();

/** Only what the page loads; the package's own index.html points at a remote demo spec. */
const ASSETS = new Set([
  'swagger-ui.css',
  'swagger-ui-bundle.js',
  'swagger-ui-standalone-preset.js',
  'favicon-32x32.png',
]);

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>media-jobs API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-ui-standalone-preset.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
`;

// A file of its own rather than an inline script, so the page's policy needs no 'unsafe-inline'
// for scripts. validatorUrl null: the default would send the spec to an online validator.
const INIT = `window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: 'StandaloneLayout',
});
`;

/** `GET /openapi.json` and `GET /docs` (swagger-ui served from node_modules). */
export function docsRoutes(): Router {
  const router = Router();
  router.get('/openapi.json', (_req, res) => {
    res.json(openApiDocument());
  });
  const page = contentSecurityPolicy(DOCS_CONTENT_SECURITY_POLICY);
  router.get('/docs', page, (_req, res) => {
    res.type('html').send(PAGE);
  });
  router.get('/docs/init.js', (_req, res) => {
    res.type('js').send(INIT);
  });
  router.get('/docs/:asset', (req, res, next) => {
    const asset = req.params.asset;
    if (!ASSETS.has(asset)) return next();
    res.sendFile(join(SWAGGER_DIR, asset), { maxAge: '1d' });
  });
  return router;
}
