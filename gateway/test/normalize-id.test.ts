import { describe, expect, it } from 'vitest';
import {
  AppError,
  normalizeJobId,
  normalizeRequestSchema,
  operationsSlug,
  sha256Hex,
  type Operation,
} from '@media-jobs/libs';
import { parseNormalizeForm } from '../src/upload-form.js';
import { sniffExtension } from '../src/upload-sniff.js';

const SHA = sha256Hex('some audio bytes');
const slug = (operations: Operation[], format: 'opus' | 'mp3' = 'opus', targetLufs = -16) =>
  operationsSlug({ operations, format, targetLufs, defaultTargetLufs: -16 });

describe('normalize job ids', () => {
  it('when operations come in any order or repeated, then the slug is the same', () => {
    expect(slug(['remove_noise', 'normalize_volume'])).toBe('normalize_volume-remove_noise-opus');
    expect(slug(['normalize_volume', 'remove_noise', 'normalize_volume'])).toBe(
      'normalize_volume-remove_noise-opus',
    );
  });

  it('when the format or a non-default target differs, then the slug differs', () => {
    expect(slug(['normalize_volume'], 'mp3')).toBe('normalize_volume-mp3');
    expect(slug(['normalize_volume'], 'opus', -14)).toBe('normalize_volume-opus-lufs_m14');
    expect(slug(['normalize_volume'], 'opus', -23.5)).toBe('normalize_volume-opus-lufs_m23_5');
    expect(slug(['normalize_volume'], 'opus', -16.02)).toBe('normalize_volume-opus');
  });

  it('when normalize_volume is absent, then the target does not split the cache', () => {
    expect(slug(['remove_noise'], 'opus', -14)).toBe(slug(['remove_noise'], 'opus', -16));
  });

  it('when every operation is asked for, then the id is <16 hex>_<slug> with only safe characters', () => {
    const all: Operation[] = [
      'sample_rate_16k',
      'highpass_filter',
      'convert_to_mono',
      'remove_noise',
      'normalize_volume',
    ];
    const id = normalizeJobId(SHA, slug(all, 'opus', -70));
    expect(id).toBe(
      `${SHA.slice(0, 16)}_convert_to_mono-highpass_filter-normalize_volume-remove_noise-sample_rate_16k-opus-lufs_m70`,
    );
    expect(id).toMatch(/^[A-Za-z0-9_-]{1,128}$/);
  });

  it('when the hash is not a sha256, then no id is made', () => {
    expect(() => normalizeJobId('../etc', 'opus')).toThrow();
  });

  it('when a request is stored, then the schema accepts it and rejects an unsafe extension', () => {
    const request = {
      upload: { sha256: SHA, ext: 'mp3', size: 10, original_name: null },
      operations: ['remove_noise'],
      format: 'wav',
      target_lufs: null,
    };
    expect(normalizeRequestSchema.safeParse(request).success).toBe(true);
    expect(
      normalizeRequestSchema.safeParse({ ...request, upload: { ...request.upload, ext: '../x' } }).success,
    ).toBe(false);
  });
});

describe('normalize form fields', () => {
  it('when operations come as operations[], comma lists and boolean fields, then they are merged and sorted', () => {
    const form = parseNormalizeForm(
      {
        operations: ['remove_noise', 'convert_to_mono,highpass_filter'],
        normalize_volume: 'true',
        sample_rate_16k: 'off',
      },
      -16,
    );
    expect(form).toEqual({
      operations: ['convert_to_mono', 'highpass_filter', 'normalize_volume', 'remove_noise'],
      format: 'opus',
      targetLufs: -16,
    });
  });

  it('when the format and target are given, then they are used; the target only with normalize_volume', () => {
    expect(
      parseNormalizeForm({ operations: 'normalize_volume', format: 'FLAC', target_lufs: '-23.04' }, -16),
    ).toMatchObject({ format: 'flac', targetLufs: -23 });
    expect(parseNormalizeForm({ operations: 'remove_noise', target_lufs: '-23' }, -16).targetLufs).toBeNull();
  });

  it.each([
    [{}, 'normalize.no_operations'],
    [{ operations: 'louder' }, 'normalize.unknown_operation'],
    [{ operations: 'normalize_volume', format: 'ogg' }, 'normalize.unknown_format'],
    [{ operations: 'normalize_volume', target_lufs: '-16 LUFS' }, 'normalize.invalid_target'],
    [{ operations: 'normalize_volume', target_lufs: '-80' }, 'normalize.invalid_target'],
  ])('when the fields are %j, then it is a 400 %s', (body, code) => {
    let error: unknown;
    try {
      parseNormalizeForm(body, -16);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(AppError);
    expect(error).toMatchObject({ status: 400, code });
  });
});

describe('upload sniffing', () => {
  const head = (...parts: (string | number[])[]) =>
    Buffer.concat([
      ...parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))),
      Buffer.alloc(16),
    ]);

  it.each([
    ['mp3 with ID3', head('ID3'), 'mp3'],
    ['mp3 frame', head([0xff, 0xfb, 0x90]), 'mp3'],
    ['ADTS AAC', head([0xff, 0xf1, 0x50]), 'aac'],
    ['WAVE', head('RIFF', [0, 0, 0, 0], 'WAVE'), 'wav'],
    ['FLAC', head('fLaC'), 'flac'],
    ['Ogg Opus', head('OggS', [0, 2], 'OpusHead'), 'opus'],
    ['MP4', head([0, 0, 0, 32], 'ftypisom'), 'mp4'],
    ['QuickTime', head([0, 0, 0, 20], 'ftypqt  '), 'mov'],
    ['M4A', head([0, 0, 0, 32], 'ftypM4A '), 'm4a'],
    ['WebM', head([0x1a, 0x45, 0xdf, 0xa3], 'B\x82webm'), 'webm'],
    ['Matroska', head([0x1a, 0x45, 0xdf, 0xa3], 'B\x82matroska'), 'mkv'],
  ])('when the bytes are %s, then the extension is %s whatever the client says', (_name, bytes, ext) => {
    expect(sniffExtension(bytes, 'application/x-msdownload')).toBe(ext);
  });

  it('when the bytes say nothing, then the declared type decides, else bin', () => {
    expect(sniffExtension(head('hello world'), 'audio/x-wav')).toBe('wav');
    expect(sniffExtension(head('hello world'), 'text/plain')).toBe('bin');
    expect(sniffExtension(Buffer.alloc(0))).toBe('bin');
  });
});
