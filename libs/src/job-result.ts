import { z } from 'zod';
import { QUALITIES } from './download-id.js';
import { OPERATIONS, OUTPUT_FORMATS } from './normalize-id.js';

/**
 * What a completed job holds in `result`, by kind. The workers build their results typed by
 * these schemas and the gateway documents them, so code and document cannot drift. A stored
 * record keeps `result` loose (`jobRecordSchema`): reading a record written under an older
 * shape never fails.
 */

const fileName = z.string().describe('Name of the result file; `GET /jobs/{id}/file` serves it');

export const downloadResultSchema = z
  .object({
    file: fileName,
    size_bytes: z.number().int().min(0).describe('Size of the file in bytes'),
    duration_s: z
      .number()
      .min(0)
      .nullable()
      .describe('Duration in seconds (ms precision); null when unknown'),
    width: z.number().int().min(0).nullable().describe('Width of the video in pixels; null for audio only'),
    height: z.number().int().min(0).nullable().describe('Height of the video in pixels; null for audio only'),
    video_codec: z
      .string()
      .nullable()
      .describe('Video codec as ffprobe names it, e.g. `h264`; null for audio only'),
    audio_codec: z
      .string()
      .nullable()
      .describe('Audio codec as ffprobe names it, e.g. `aac`; null without audio'),
    container: z.string().describe('File extension of the container, e.g. `mp4`, `webm`, `m4a`'),
    quality: z.enum(QUALITIES).describe('The quality the job was submitted with'),
    format_id: z.string().optional().describe('The yt-dlp format id(s) chosen, e.g. `137+140`'),
    title: z.string().optional().describe('Title of the video as the source gives it'),
  })
  .describe('Result of a completed download job');
export type DownloadResult = z.infer<typeof downloadResultSchema>;

const loudnessMeasureSchema = z.object({
  integrated_lufs: z.number().describe('Integrated loudness, LUFS (-70: silence)'),
  loudness_range_lu: z.number().describe('Loudness range, LU'),
  true_peak_dbtp: z
    .number()
    .nullable()
    .describe('True peak, dBTP; null for digital silence or when not measured'),
});

const normalizeLoudnessSchema = z
  .object({
    target_lufs: z.number().describe('Integrated loudness the job aimed at, LUFS'),
    true_peak_ceiling_dbtp: z.number().describe('True-peak ceiling, dBTP'),
    gain_db: z.number().describe('Gain applied, dB'),
    limiter: z.boolean().describe('Whether a limiter kept the peaks under the ceiling'),
    gain_capped: z
      .boolean()
      .optional()
      .describe(
        'Whether the gain the target needed was over +30 dB (near-silent input): the output is then the input raised by 30 dB, quieter than the target',
      ),
    corrections: z.number().int().min(0).describe('Extra encodes made after measuring the output'),
    input: loudnessMeasureSchema.describe(
      'Measured after the other operations, i.e. on what the gain applies to',
    ),
    output: loudnessMeasureSchema.describe('Measured on the encoded stream of the written file'),
  })
  .describe('Present when the operations include `normalize_volume`');
export type NormalizeLoudness = z.infer<typeof normalizeLoudnessSchema>;

export const normalizeResultSchema = z
  .object({
    file: fileName,
    size_bytes: z.number().int().min(0).describe('Size of the file in bytes'),
    duration_s: z.number().min(0).nullable().describe('Duration of the output in seconds; null when unknown'),
    format: z.enum(OUTPUT_FORMATS).describe('Output format'),
    codec: z.string().describe('Audio codec of the output, e.g. `opus`, `pcm_s16le`'),
    sample_rate: z.number().int().min(0).describe('Sample rate of the output, Hz'),
    channels: z.number().int().min(0).describe('Channels of the output'),
    operations: z.array(z.enum(OPERATIONS)).describe('The operations applied, sorted by name'),
    input: z
      .object({
        container: z
          .string()
          .describe('Container as ffprobe names it, e.g. `wav`, `mov,mp4,m4a,3gp,3g2,mj2`'),
        codec: z.string().describe('Audio codec of the upload'),
        sample_rate: z.number().int().min(0).describe('Sample rate of the upload, Hz; 0 when unknown'),
        channels: z.number().int().min(0).describe('Channels of the upload; 0 when unknown'),
        duration_s: z
          .number()
          .min(0)
          .nullable()
          .describe('Duration of the upload in seconds; null when unknown'),
        had_video: z.boolean().describe('Whether the upload held a video stream (dropped from the output)'),
      })
      .describe('What the upload was, as ffprobe read it'),
    loudness: normalizeLoudnessSchema.optional(),
  })
  .describe('Result of a completed normalize job');
export type NormalizeResult = z.infer<typeof normalizeResultSchema>;

/** Either result, as the API documents it: the two never share their required fields. */
export const jobResultSchema = z.union([downloadResultSchema, normalizeResultSchema]);
export type JobResult = z.infer<typeof jobResultSchema>;
