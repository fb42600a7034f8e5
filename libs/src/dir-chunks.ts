import { opendirSync, type Dir } from 'node:fs';

/**
 * Entries of `dir` in chunks of `size`, optionally regular files only; nothing when the folder
 * is missing. Reads with the synchronous `Dir` API, which fetches entries in buffers of 2048,
 * instead of one promise per entry, and hands the event loop back between chunks.
 */
export async function* dirChunks(dir: string, size: number, filesOnly: boolean): AsyncGenerator<string[]> {
  let handle: Dir;
  try {
    handle = opendirSync(dir, { bufferSize: 2048 });
  } catch {
    return;
  }
  try {
    let chunk: string[] = [];
    for (let entry = handle.readSync(); entry !== null; entry = handle.readSync()) {
      if (filesOnly && !entry.isFile()) continue;
      chunk.push(entry.name);
      if (chunk.length >= size) {
        yield chunk;
        chunk = [];
      }
    }
    if (chunk.length > 0) yield chunk;
  } finally {
    handle.closeSync();
  }
}
