/**
 * The stored extension of an upload comes from its first bytes (or, failing that, the
 * declared type), never from the client's file name, and always from this allow-list.
 */
export const UPLOAD_EXTENSIONS = [
  'mp3',
  'wav',
  'flac',
  'ogg',
  'opus',
  'm4a',
  'mp4',
  'mov',
  'mkv',
  'webm',
  'aac',
  'aiff',
  'amr',
  'wma',
  'avi',
  'ts',
  'bin',
] as const;
export type UploadExtension = (typeof UPLOAD_EXTENSIONS)[number];

/** Bytes of the head the sniffer looks at. */
export const SNIFF_BYTES = 4096;

const ascii = (head: Buffer, start: number, end: number): string =>
  head.subarray(start, end).toString('latin1');

function sniffIsoBmff(head: Buffer): UploadExtension | null {
  if (ascii(head, 4, 8) !== 'ftyp') return null;
  const brand = ascii(head, 8, 12);
  if (brand === 'qt  ') return 'mov';
  if (brand === 'M4A ' || brand === 'M4B ') return 'm4a';
  return 'mp4';
}

function sniffEbml(head: Buffer): UploadExtension | null {
  if (head.readUInt32BE(0) !== 0x1a45dfa3) return null;
  return head.includes('webm', 0, 'latin1') ? 'webm' : 'mkv';
}

function sniffMpegAudio(head: Buffer): UploadExtension | null {
  if (ascii(head, 0, 3) === 'ID3') return 'mp3';
  const [b0, b1] = [head[0] ?? 0, head[1] ?? 0];
  if (b0 !== 0xff || (b1 & 0xe0) !== 0xe0) return null;
  // Frame sync: layer bits 00 are ADTS (AAC), anything else MPEG audio.
  return (b1 & 0x06) === 0 ? 'aac' : 'mp3';
}

function sniffRiffAndOthers(head: Buffer): UploadExtension | null {
  const riff = ascii(head, 0, 4);
  if (riff === 'RIFF' && ascii(head, 8, 12) === 'WAVE') return 'wav';
  if (riff === 'RIFF' && ascii(head, 8, 12) === 'AVI ') return 'avi';
  if (riff === 'FORM' && ['AIFF', 'AIFC'].includes(ascii(head, 8, 12))) return 'aiff';
  if (riff === 'fLaC') return 'flac';
  if (riff === 'OggS') return head.includes('OpusHead', 0, 'latin1') ? 'opus' : 'ogg';
  if (ascii(head, 0, 5) === '#!AMR') return 'amr';
  if (head.subarray(0, 4).equals(Buffer.from([0x30, 0x26, 0xb2, 0x75]))) return 'wma';
  if (head[0] === 0x47 && head.length > 188 && head[188] === 0x47) return 'ts';
  return null;
}

const DECLARED: Record<string, UploadExtension> = {
  'audio/mpeg': 'mp3',
  'audio/mp3': 'mp3',
  'audio/wav': 'wav',
  'audio/x-wav': 'wav',
  'audio/wave': 'wav',
  'audio/flac': 'flac',
  'audio/x-flac': 'flac',
  'audio/ogg': 'ogg',
  'audio/opus': 'opus',
  'audio/mp4': 'm4a',
  'audio/x-m4a': 'm4a',
  'audio/aac': 'aac',
  'audio/webm': 'webm',
  'video/mp4': 'mp4',
  'video/quicktime': 'mov',
  'video/webm': 'webm',
  'video/x-matroska': 'mkv',
};

/** The extension to store an upload under; `bin` when neither the bytes nor the declared type say. */
export function sniffExtension(head: Buffer, declaredType?: string): UploadExtension {
  if (head.length >= 12) {
    const found = sniffIsoBmff(head) ?? sniffEbml(head) ?? sniffRiffAndOthers(head);
    if (found) return found;
  }
  if (head.length >= 3) {
    const mpeg = sniffMpegAudio(head);
    if (mpeg) return mpeg;
  }
  return DECLARED[(declaredType ?? '').split(';')[0]?.trim().toLowerCase() ?? ''] ?? 'bin';
}
