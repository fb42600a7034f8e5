import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import { AppError, type Bucket, type FileStore } from '@media-jobs/libs';

/**
 * Serves an object of the file store the way `res.sendFile` serves a local file: type from the
 * extension, ETag and Last-Modified (so conditional requests get a 304), and one byte range
 * (several ranges, like `send`, get the whole file). Only the requested bytes are read, and
 * they are streamed: a slow client holds back the reads instead of filling memory.
 */
export async function sendStored(
  req: Request,
  res: Response,
  files: FileStore,
  where: { bucket: Bucket; name: string; missing: () => AppError },
): Promise<void> {
  const file = await files.stat(where.bucket, where.name);
  if (!file) throw where.missing();
  res.type(where.name);
  res.setHeader('Content-Disposition', `attachment; filename="${where.name}"`);
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Cache-Control', 'public, max-age=0');
  res.setHeader('Last-Modified', new Date(file.mtimeMs).toUTCString());
  res.setHeader('ETag', `W/"${file.size.toString(16)}-${Math.floor(file.mtimeMs).toString(16)}"`);
  if (req.fresh) {
    res.status(304).end();
    return;
  }
  let range: { start: number; end: number } | undefined;
  const requested = req.headers.range && ifRangeHolds(req, res) ? req.range(file.size) : undefined;
  if (requested === -1) {
    res.removeHeader('Content-Disposition');
    res.setHeader('Content-Range', `bytes */${file.size}`);
    throw new AppError(
      'request.range_not_satisfiable',
      `the range is outside the file's ${file.size} bytes`,
      {
        status: 416,
      },
    );
  }
  if (Array.isArray(requested) && requested.length === 1 && requested.type === 'bytes') {
    range = requested[0];
  }
  const length = range ? range.end - range.start + 1 : file.size;
  if (range) {
    res.status(206);
    res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${file.size}`);
  }
  res.setHeader('Content-Length', length);
  if (req.method === 'HEAD' || length === 0) {
    res.end();
    return;
  }
  const body = await files.read(where.bucket, where.name, range);
  if (!body) throw where.missing();
  // A failure half-way can only cut the response short; the client sees fewer bytes than promised.
  await pipeline(body, res).catch(() => res.destroy());
}

/** `If-Range` with a validator that no longer matches: the whole file instead of the range. */
function ifRangeHolds(req: Request, res: Response): boolean {
  const ifRange = req.get('if-range');
  if (!ifRange) return true;
  if (ifRange.includes('"')) return ifRange === res.getHeader('ETag');
  const lastModified = res.getHeader('Last-Modified');
  return typeof lastModified === 'string' && Date.parse(lastModified) <= Date.parse(ifRange);
}
