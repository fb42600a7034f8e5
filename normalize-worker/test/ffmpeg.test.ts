import { describe, expect, it } from 'vitest';
import {
  encodeArgs,
  gainFilters,
  measurePcmArgs,
  parseTruePeak,
  truePeakArgs,
  measureArgs,
  outputSampleRate,
  parseEbur128Summary,
  parseProbe,
  parseProgressLine,
  planGain,
  planOutput,
  preGainFilters,
  probeVerdict,
} from '../src/ffmpeg.js';

const SUMMARY = `[Parsed_ebur128_0 @ 0x55] t: 2.9 TARGET:-23 LUFS M: -20.1 S: -20.0 I: -20.0 LUFS LRA: 0.0 LU FTPK: -7.0 dBFS TPK: -7.0 dBFS
[Parsed_ebur128_0 @ 0x55] Summary:

  Integrated loudness:
    I:         -30.3 LUFS
    Threshold: -40.3 LUFS

  Loudness range:
    LRA:         4.2 LU
    Threshold: -50.3 LUFS
    LRA low:   -33.5 LUFS
    LRA high:  -29.6 LUFS

  True peak:
    Peak:       -5.8 dBFS
`;

describe('ffmpeg output parsers', () => {
  it('when ebur128 prints its summary, then loudness, range and true peak are read from it, not from frame lines', () => {
    expect(parseEbur128Summary(SUMMARY)).toEqual({ integrated: -30.3, lra: 4.2, truePeak: -5.8 });
    const sampled = SUMMARY.replace('True peak:', 'Sample peak:');
    expect(parseEbur128Summary(sampled)).toEqual({
      integrated: -30.3,
      lra: 4.2,
      truePeak: null,
      samplePeak: -5.8,
    });
  });

  it('when the input is digital silence, then the peak is null and the loudness the gate floor', () => {
    const silent = SUMMARY.replace('-30.3 LUFS', '-70.0 LUFS').replace('-5.8 dBFS', '-inf dBFS');
    expect(parseEbur128Summary(silent)).toEqual({ integrated: -70, lra: 4.2, truePeak: null });
    expect(parseEbur128Summary('no summary here')).toBeNull();
  });

  it('when volumedetect reads the oversampled, lowered signal, then the true peak adds the headroom back', () => {
    expect(parseTruePeak('[Parsed_volumedetect_2 @ 0x1] max_volume: -35.2 dB\n')).toBe(-23.2);
    expect(parseTruePeak('[Parsed_volumedetect_2 @ 0x1] max_volume: -91.0 dB\n')).toBeNull();
    expect(parseTruePeak('nothing')).toBeNull();
  });

  it('when -progress lines arrive, then out_time_us gives the position in seconds', () => {
    expect(parseProgressLine('out_time_us=2500000')).toBe(2.5);
    expect(parseProgressLine('out_time_ms=1000000')).toBe(1);
    expect(parseProgressLine('out_time=00:00:02.500000')).toBeNull();
    expect(parseProgressLine('progress=continue')).toBeNull();
  });

  it('when ffprobe describes a video with audio, then the first audio stream is taken', () => {
    const json = JSON.stringify({
      streams: [
        { codec_type: 'video', codec_name: 'h264' },
        { codec_type: 'audio', codec_name: 'aac', sample_rate: '44100', channels: 2 },
      ],
      format: { format_name: 'mov,mp4,m4a,3gp,3g2,mj2', duration: '3.000000' },
    });
    expect(parseProbe(json)).toEqual({
      duration: 3,
      formatName: 'mov,mp4,m4a,3gp,3g2,mj2',
      codec: 'aac',
      sampleRate: 44100,
      channels: 2,
      hasVideo: true,
    });
    expect(parseProbe(JSON.stringify({ streams: [{ codec_type: 'video' }], format: {} }))).toBeNull();
  });

  it('when ffprobe rejects a file, then the verdict is its reason without our path', () => {
    expect(probeVerdict('/data/uploads/abc.bin: Invalid data found when processing input\n')).toBe(
      'Invalid data found when processing input',
    );
  });
});

describe('output plan', () => {
  it.each([
    ['opus', 44100, false, 48000],
    ['opus', 16000, false, 16000],
    ['mp3', 192000, false, 48000],
    ['mp3', 88200, false, 44100],
    ['mp3', 44100, false, 44100],
    ['m4a', 96000, false, 48000],
    ['flac', 96000, false, 96000],
    ['wav', 44100, true, 16000],
  ] as const)(
    'when the format is %s and the input %i Hz (16k: %s), then the output is %i Hz',
    (format, rate, to16k, expected) => {
      expect(outputSampleRate(format, rate, to16k)).toBe(expected);
    },
  );

  it('when the input has 6 channels, then lossy outputs are stereo, lossless keep them, mono is one', () => {
    expect(planOutput('opus', { sampleRate: 48000, channels: 6 }, ['remove_noise']).channels).toBe(2);
    expect(planOutput('flac', { sampleRate: 48000, channels: 6 }, ['remove_noise']).channels).toBe(6);
    expect(planOutput('flac', { sampleRate: 48000, channels: 6 }, ['convert_to_mono']).channels).toBe(1);
  });

  it('when all filters are asked for, then downmix comes first and the 16 kHz resample last', () => {
    const ops = ['sample_rate_16k', 'remove_noise', 'highpass_filter', 'convert_to_mono'] as const;
    const plan = planOutput('opus', { sampleRate: 48000, channels: 2 }, ops);
    const filters = preGainFilters(ops, plan, 2);
    expect(filters[0]).toBe('aformat=channel_layouts=mono');
    expect(filters[1]).toMatch(/^highpass=f=80/);
    expect(filters[2]).toMatch(/^afftdn/);
    expect(filters[3]).toBe('aresample=16000');
  });
});

describe('gain plan', () => {
  it('when the gain keeps the true peak under the ceiling, then it is one volume filter and no limiter', () => {
    const plan = planGain({ integrated: -24, lra: 3, truePeak: -12, samplePeak: -12.5 }, -16, -1.5, 'opus');
    expect(plan).toEqual({ gainDb: 8, limitDb: null });
    expect(gainFilters(plan)).toEqual(['volume=8.00dB']);
  });

  it('when the gain would push peaks over the ceiling, then a limiter holds them with margin for the codec', () => {
    const plan = planGain({ integrated: -30, lra: 3, truePeak: -6 }, -16, -1.5, 'opus');
    expect(plan.gainDb).toBe(14);
    expect(plan.limitDb).toBe(-3.8);
    expect(gainFilters(plan)[1]).toMatch(/^alimiter=limit=0\.64565:.*level=false/);
  });

  it('when a loud input needs a cut, then the gain is negative and no limiter runs', () => {
    expect(planGain({ integrated: -7, lra: 2, truePeak: 0.3 }, -16, -1.5, 'mp3')).toEqual({
      gainDb: -9,
      limitDb: null,
    });
  });

  it('when only the sample peak is known, then the true peak is estimated 1 dB above it', () => {
    expect(
      planGain({ integrated: -30, lra: 3, truePeak: null, samplePeak: -17 }, -16, -1.5, 'wav').limitDb,
    ).toBeNull();
    expect(
      planGain({ integrated: -30, lra: 3, truePeak: null, samplePeak: -16 }, -16, -1.5, 'wav').limitDb,
    ).toBe(-2.6);
  });

  it('when the input is silent, then nothing is amplified', () => {
    expect(planGain({ integrated: -70, lra: 0, truePeak: null }, -16, -1.5, 'opus')).toEqual({
      gainDb: 0,
      limitDb: null,
    });
  });
});

describe('ffmpeg arguments', () => {
  const plan = planOutput('mp3', { sampleRate: 44100, channels: 2 }, ['normalize_volume']);

  it('when measuring, then the filters end in ebur128 with true peak and nothing is written', () => {
    const args = measureArgs('/data/uploads/x.mp3', ['highpass=f=80'], 'true');
    expect(args).toContain('[0:a:0]highpass=f=80,ebur128=peak=true:framelog=verbose[m]');
    expect(args.slice(-3)).toEqual(['-f', 'null', '-']);
    expect(args.slice(args.indexOf('-progress'), args.indexOf('-progress') + 2)).toEqual([
      '-progress',
      'pipe:1',
    ]);
    expect(measureArgs('/in.mp3', [], 'sample')).toContain('[0:a:0]ebur128=peak=sample:framelog=verbose[m]');
  });

  it('when encoding with a tap, then the graph splits right before the encoder and the tap is float PCM', () => {
    const tap = { path: '/w/encoded.f32', sampleRate: 44100, channels: 2 };
    const args = encodeArgs({
      input: '/in.wav',
      output: '/w/out.mp3',
      plan,
      pre: ['highpass=f=80'],
      gain: ['volume=3.00dB'],
      tap,
    });
    expect(args).toContain('[0:a:0]highpass=f=80,volume=3.00dB,aresample=44100,asplit=2[out][tap]');
    expect(args.slice(-11)).toEqual([
      '-map',
      '[tap]',
      '-ar',
      '44100',
      '-ac',
      '2',
      '-c:a',
      'pcm_f32le',
      '-f',
      'f32le',
      '/w/encoded.f32',
    ]);
    expect(args.indexOf('/w/out.mp3')).toBeGreaterThan(args.indexOf('libmp3lame'));
  });

  it('when the tap is measured, then loudness comes from ebur128 and the true peak from 4x oversampling', () => {
    const args = measurePcmArgs('/w/encoded.f32', 48000, 2);
    expect(args.slice(args.indexOf('-i') - 6, args.indexOf('-i') + 2)).toEqual([
      '-f',
      'f32le',
      '-ar',
      '48000',
      '-ac',
      '2',
      '-i',
      '/w/encoded.f32',
    ]);
    expect(args).toContain(
      '[0]asplit=2[l][p];[l]ebur128=peak=none:framelog=verbose[lo];[p]aresample=192000:filter_size=32,volume=-12dB,volumedetect[po]',
    );
    expect(truePeakArgs('/in.wav', ['highpass=f=80'], 44100)).toContain(
      '[0:a:0]highpass=f=80,aresample=192000:filter_size=32,volume=-12dB,volumedetect[p]',
    );
  });

  it('when encoding without taps or filters, then the graph is one chain with the resample', () => {
    const args = encodeArgs({ input: '/in.wav', output: '/w/out.mp3', plan, pre: [], gain: [] });
    expect(args).toContain('[0:a:0]aresample=44100[out]');
    expect(args).not.toContain('pcm_f32le');
  });
});
