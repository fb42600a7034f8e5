import { describe, expect, it } from 'vitest';
import {
  encodeArgs,
  gainFilters,
  meterArgs,
  interpolateGain,
  parseNamedSummary,
  trialSlope,
  MAX_GAIN_DB,
  parseTruePeak,
  truePeakArgs,
  measureArgs,
  outputSampleRate,
  parseEbur128Frame,
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
    expect(plan).toEqual({ gainDb: 8, limitDb: null, capped: false });
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
      capped: false,
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
      capped: false,
    });
  });

  it('when a near-silent input needs more than the most gain, then the gain is capped and says so', () => {
    const plan = planGain({ integrated: -62, lra: 2, truePeak: -50 }, -16, -1.5, 'opus');
    expect(plan).toEqual({ gainDb: MAX_GAIN_DB, limitDb: null, capped: true });
  });

  it('when a limiter trial measured a few gains, then the gain that lands on the aim is interpolated between them', () => {
    const points = [
      { gain: 10, lufs: -16.6 },
      { gain: 11.5, lufs: -15.4 },
      { gain: 13, lufs: -14.2 },
    ];
    expect(interpolateGain(points, -16)).toBeCloseTo(10.75, 2);
    expect(interpolateGain([{ gain: 10, lufs: -15.9 }], -16)).toBeCloseTo(9.9, 2);
    expect(interpolateGain(points, -13)).toBeCloseTo(14.5, 2);
  });

  it('when a trial log holds a silent summary of the first graph and then the real one, then the real one is read per branch', () => {
    const summary = (name: string, i: number) =>
      `[ebur128@${name} @ 0x1] Summary:\n\n  Integrated loudness:\n    I:         ${i} LUFS\n    Threshold: -80 LUFS\n\n  Loudness range:\n    LRA:         1.0 LU\n`;
    const log =
      summary('trial1', -70) + summary('trial0', -70) + summary('trial1', -15.3) + summary('trial0', -16.4);
    expect(parseNamedSummary(log, 'trial0')?.integrated).toBe(-16.4);
    expect(parseNamedSummary(log, 'trial1')?.integrated).toBe(-15.3);
    expect(
      trialSlope([
        { gain: 24, lufs: -16.4 },
        { gain: 26, lufs: -15.3 },
      ]),
    ).toBeCloseTo(0.55, 2);
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
    // A running reading is asked for: frames logged at the level the pass prints.
    expect(measureArgs('/in.mp3', [], 'sample', true)).toContain(
      '[0:a:0]ebur128=peak=sample:framelog=info[m]',
    );
  });

  it("when ebur128 logs a frame, then its time, the running loudness and the highest channel's sample peak are read", () => {
    const line =
      '[Parsed_ebur128_0 @ 0x55a27771d780] t: 39.9       TARGET:-23 LUFS    M: -47.9 S: -40.4     I: -40.1 LUFS       LRA:   0.9 LU  SPK: -24.0 -25.9 dBFS';
    expect(parseEbur128Frame(line)).toEqual({ seconds: 39.9, integrated: -40.1, samplePeak: -24 });
    // Silence so far: no loudness above the gate, no peak.
    const silent =
      '[Parsed_ebur128_0 @ 0x5] t: 0.5  TARGET:-23 LUFS    M:-120.7 S:-120.7     I: -70.0 LUFS       LRA:   0.0 LU  SPK:  -inf  -inf dBFS';
    expect(parseEbur128Frame(silent)).toEqual({ seconds: 0.5, integrated: -70, samplePeak: null });
    // Without peak measurement the line has no SPK.
    expect(
      parseEbur128Frame(
        '[Parsed_ebur128_0 @ 0x5] t: 1.2 TARGET:-23 LUFS M: -20.1 S: -20.0 I: -20.0 LUFS LRA: 0.0 LU',
      ),
    ).toEqual({ seconds: 1.2, integrated: -20, samplePeak: null });
    expect(parseEbur128Frame('Stream mapping:')).toBeNull();
    expect(parseEbur128Frame('  Integrated loudness:')).toBeNull();
  });

  it('when encoding with a tap, then a tee sends the encoded stream to the file and to the meter', () => {
    const args = encodeArgs({
      input: '/in.wav',
      output: '/w/out.mp3',
      plan,
      pre: ['highpass=f=80'],
      gain: ['volume=3.00dB'],
      tap: { path: '/w/encoded.tap' },
    });
    expect(args).toContain('[0:a:0]highpass=f=80,volume=3.00dB,aresample=44100[out]');
    expect(args.slice(-3)).toEqual(['-f', 'tee', '[f=mp3]/w/out.mp3|[f=mp3:onfail=abort]/w/encoded.tap']);
    const m4a = planOutput('m4a', { sampleRate: 44100, channels: 2 }, []);
    const teed = encodeArgs({
      input: '/i',
      output: '/w/o.m4a',
      plan: m4a,
      pre: [],
      gain: [],
      tap: { path: '/w/t' },
    });
    expect(teed).not.toContain('-movflags');
    expect(teed.at(-1)).toBe('[f=ipod:movflags=+faststart]/w/o.m4a|[f=adts:onfail=abort]/w/t');
    expect(meterArgs({ path: '/w/o.m4a' }, m4a).slice(5, 7)).toEqual(['-i', '/w/o.m4a']);
  });

  it('when the tap is measured, then the encoded stream is decoded, loudness from ebur128 and the true peak from 4x oversampling', () => {
    const args = meterArgs({ path: '/w/encoded.tap' }, { format: 'opus', sampleRate: 48000, channels: 2 });
    expect(args.slice(args.indexOf('-i') - 2, args.indexOf('-i') + 2)).toEqual([
      '-f',
      'ogg',
      '-i',
      '/w/encoded.tap',
    ]);
    expect(args).toContain(
      '[0:a:0]asplit=2[l][p];[l]ebur128=peak=none:framelog=verbose[lo];[p]aresample=192000:filter_size=32,volume=-12dB,volumedetect[po]',
    );
    const wav = meterArgs({ path: '/t' }, { format: 'wav', sampleRate: 44100, channels: 1 });
    expect(wav.slice(wav.indexOf('-i') - 6, wav.indexOf('-i'))).toEqual([
      '-f',
      's16le',
      '-ar',
      '44100',
      '-ac',
      '1',
    ]);
    expect(truePeakArgs('/in.wav', ['highpass=f=80'], 44100)).toContain(
      '[0:a:0]highpass=f=80,aresample=192000:filter_size=32,volume=-12dB,volumedetect[p]',
    );
  });

  it('when encoding without taps or filters, then the graph is one chain with the resample', () => {
    const args = encodeArgs({ input: '/in.wav', output: '/w/out.mp3', plan, pre: [], gain: [] });
    expect(args).toContain('[0:a:0]aresample=44100[out]');
    expect(args).not.toContain('tee');
  });
});
