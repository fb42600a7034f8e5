import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { expect } from 'vitest';

/**
 * Checks bodies against the OpenAPI document itself (ajv, JSON Schema 2020-12, the dialect of
 * OpenAPI 3.1): each schema is compiled with the document's components beside it, so its
 * `$ref`s resolve exactly as an OpenAPI client would resolve them.
 */
export interface DocCheck {
  /** The document as the gateway serves it. */
  doc: any;
  /** The body matches the schema at `paths[path][method].responses[status]`. */
  response(path: string, method: string, status: number, body: unknown): void;
  /** The body matches `components.schemas[name]`, e.g. an SSE event's data against `JobEvent`. */
  component(name: string, body: unknown): void;
}

/** Fetches `/openapi.json` from a running gateway and returns the checks against it. */
export async function fetchDocCheck(gatewayUrl: string): Promise<DocCheck> {
  const res = await fetch(`${gatewayUrl}/openapi.json`);
  expect(res.status).toBe(200);
  return docCheck(await res.json());
}

export function docCheck(doc: any): DocCheck {
  // Formats (date-time) are left to the patterns zod emits beside them.
  const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
  const compiled = new Map<string, ValidateFunction>();
  const check = (label: string, schema: object, body: unknown) => {
    const key = JSON.stringify(schema);
    let validate = compiled.get(key);
    if (!validate) {
      validate = ajv.compile({ ...schema, components: doc.components });
      compiled.set(key, validate);
    }
    const ok = validate(body);
    expect(ok, `${label}: ${JSON.stringify(validate.errors)} for ${JSON.stringify(body)}`).toBe(true);
  };
  return {
    doc,
    response(path, method, status, body) {
      const response = doc.paths[path]?.[method]?.responses?.[status];
      expect(response, `${method.toUpperCase()} ${path} documents ${status}`).toBeDefined();
      check(`${method.toUpperCase()} ${path} ${status}`, response.content['application/json'].schema, body);
    },
    component(name, body) {
      expect(doc.components.schemas[name], `component ${name}`).toBeDefined();
      check(name, { $ref: `#/components/schemas/${name}` }, body);
    },
  };
}
