import express, { type RequestHandler } from 'express';

/** The error body-parser raises, with the `type` and `status` `errors.ts` maps (400, 413). */
function parserError(
  type: 'entity.parse.failed' | 'entity.too.large' | 'request.aborted',
  status: number,
  message: string,
): Error {
  return Object.assign(new Error(message), { type, status, expose: true });
}

/** `application/json`, bare or with a UTF-8 charset: the only types the lean path reads. */
const PLAIN_JSON = /^application\/json\s*(;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;

/**
 * `express.json({ limit, strict: true })` with a lean path for the request every client sends:
 * `Content-Type: application/json` (UTF-8), a `Content-Length` and no `Content-Encoding`. That
 * one is read straight from the socket's chunks and parsed once, with body-parser's answers (a
 * length over the limit is a 413 before any byte is read; a body that is not a JSON object or
 * array is a 400; an empty one is `{}`; a UTF-8 BOM is skipped). Every other request (another
 * charset, a compressed or chunked body, another type) goes to body-parser itself, so nothing
 * it accepts or refuses changes. On a cache hit, body-parser's type, charset and stream
 * handling cost about as much as the Redis round trip (profiled under `npm run bench:download`).
 */
export function jsonBody(limitBytes: number): RequestHandler {
  const full = express.json({ limit: limitBytes, strict: true });
  return (req, res, next) => {
    const type = req.headers['content-type'];
    const length = req.headers['content-length'];
    if (
      req.method !== 'POST' ||
      type === undefined ||
      length === undefined ||
      req.headers['content-encoding'] !== undefined ||
      req.headers['transfer-encoding'] !== undefined ||
      !PLAIN_JSON.test(type)
    ) {
      full(req, res, next);
      return;
    }
    // Node's parser has checked the header is one decimal number.
    const declared = Number(length);
    if (declared > limitBytes) {
      // Not read: body-parser answers so too, and the connection closes after the answer.
      next(parserError('entity.too.large', 413, 'request entity too large'));
      return;
    }
    const chunks: Buffer[] = [];
    let received = 0;
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      let body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received);
      if (body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf)
        body = body.subarray(3);
      if (body.length === 0) {
        req.body = {};
        next();
        return;
      }
      const text = body.toString('utf8');
      // strict: only an object or an array at the top, as body-parser's first-character check.
      const first = /\S/.exec(text)?.[0];
      if (first !== '{' && first !== '[') {
        next(parserError('entity.parse.failed', 400, 'the body is not a JSON object or array'));
        return;
      }
      try {
        req.body = JSON.parse(text);
      } catch (err) {
        next(parserError('entity.parse.failed', 400, (err as Error).message));
        return;
      }
      next();
    };
    // A client gone mid-body: an error like body-parser's, so the request is counted and logged.
    const onAbort = () => {
      cleanup();
      next(parserError('request.aborted', 400, 'request aborted'));
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('aborted', onAbort);
      req.off('error', onAbort);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('aborted', onAbort);
    req.on('error', onAbort);
  };
}
