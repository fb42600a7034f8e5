import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Request } from 'express';
import type { StorageEngine } from 'multer';
import { AppError, asFileStore, storedPath, type FileStore, type Storage } from '@media-jobs/libs';
import { SNIFF_BYTES, UPLOAD_EXTENSIONS, sniffExtension } from './upload-sniff.js';

/** What the storage engine knows of a file once it is on disk under `tmp/`. */
export interface ReceivedFile {
  path: string;
  size: number;
  sha256: string;
  ext: string;
  originalname: string;
}

export function uploadTooLarge(maxBytes: number): AppError {
  const mb = Number((maxBytes / (1024 * 1024)).toFixed(3));
  return new AppError('upload.too_large', `the file is larger than the ${mb} MB limit (MAX_UPLOAD_MB)`, {
    status: 413,
    details: { max_bytes: maxBytes },
  });
}

/**
 * Counts, hashes and keeps the head of the bytes as they pass on to the disk. Past the limit
 * it drops the rest rather than failing: destroying busboy's file stream would make multer
 * answer before the partial file is removed.
 */
function meter(maxBytes: number) {
  const hash = createHash('sha256');
  const head: Buffer[] = [];
  let headBytes = 0;
  let size = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, next) {
      size += chunk.length;
      if (size > maxBytes) return next();
      hash.update(chunk);
      if (headBytes < SNIFF_BYTES) {
        head.push(chunk.subarray(0, SNIFF_BYTES - headBytes));
        headBytes += Math.min(chunk.length, SNIFF_BYTES - headBytes);
      }
      next(null, chunk);
    },
  });
  return {
    stream,
    tooLarge: () => size > maxBytes,
    result: () => ({ size, sha256: hash.digest('hex'), head: Buffer.concat(head) }),
  };
}

/**
 * A multer storage engine that streams the upload to `DATA_DIR/tmp` while computing its
 * sha256, so a file is never held whole in memory. A partial file is removed on any error,
 * including the size limit and a client that goes away.
 */
export function hashingStorage(storage: Storage, maxBytes: number): StorageEngine {
  return {
    _handleFile(
      _req: Request,
      file: Express.Multer.File,
      cb: (error?: unknown, info?: Partial<ReceivedFile>) => void,
    ) {
      const path = join(storage.tmp, `upload-${randomBytes(8).toString('hex')}.part`);
      const m = meter(maxBytes);
      const out = createWriteStream(path, { flags: 'wx' });
      const fail = async (err: unknown) => {
        // The file opens asynchronously: remove it only once the stream has closed.
        if (!out.closed) await once(out, 'close').catch(() => undefined);
        await rm(path, { force: true }).catch(() => undefined);
        cb(err);
      };
      pipeline(file.stream, m.stream, out).then(() => {
        if (m.tooLarge()) return fail(uploadTooLarge(maxBytes));
        const { size, sha256, head } = m.result();
        cb(null, { path, size, sha256, ext: sniffExtension(head, file.mimetype) });
      }, fail);
    },
    _removeFile(_req: Request, file: Express.Multer.File, cb: (error: Error | null) => void) {
      rm(file.path, { force: true }).then(
        () => cb(null),
        (err: Error) => cb(err),
      );
    },
  };
}

/**
 * Puts a received file in `uploads` as `<sha256>.<ext>`. If those bytes are stored already
 * (under any extension), the new copy is dropped: one stored copy serves every job.
 */
export async function storeUpload(
  files: FileStore | Storage,
  file: ReceivedFile,
): Promise<{ ext: string; path: string }> {
  const store = asFileStore(files);
  for (const ext of UPLOAD_EXTENSIONS) {
    const name = `${file.sha256}.${ext}`;
    if (await store.stat('uploads', name)) {
      await rm(file.path, { force: true });
      return { ext, path: storedPath(store, 'uploads', name) };
    }
  }
  const name = `${file.sha256}.${file.ext}`;
  await store.put('uploads', name, file.path);
  return { ext: file.ext, path: storedPath(store, 'uploads', name) };
}
