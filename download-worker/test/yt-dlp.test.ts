import { describe, expect, it } from 'vitest';
import { mediaInfo } from '../src/probe.js';
import {
  DownloadTracker,
  FAILURE_KINDS,
  PROGRESS_PREFIX,
  buildYtDlpArgs,
  classifyFailure,
  errorReason,
  formatArgs,
  parseProgressLine,
  progressPercent,
  type YtDlpProgress,
} from '../src/yt-dlp.js';
import { YT_DLP_MESSAGES } from './yt-dlp-messages.js';

const base = {
  url: 'https://example.com/v.m3u8',
  workDir: '/data/tmp/x_best.ab12',
  ffmpegPath: 'ffmpeg',
  maxBytes: 1000,
};

const line = (p: Record<string, unknown>) => `${PROGRESS_PREFIX}${JSON.stringify(p)}`;
const progress = (p: Partial<YtDlpProgress>): YtDlpProgress => ({
  status: 'downloading',
  downloaded_bytes: null,
  total_bytes: null,
  total_bytes_estimate: null,
  fragment_index: null,
  fragment_count: null,
  filename: null,
  ...p,
});

describe('buildYtDlpArgs', () => {
  it('when any job is built, then the URL comes last after -- and config files are ignored', () => {
    const args = buildYtDlpArgs({ ...base, url: '--exec=rm -rf /', quality: 'best' });
    expect(args.slice(-2)).toEqual(['--', '--exec=rm -rf /']);
    expect(args.indexOf('--')).toBe(args.length - 2);
    expect(args).toContain('--ignore-config');
    expect(args).toContain('--no-playlist');
    expect(args).toContain('--newline');
  });

  it('when a job is built, then output, result file and timeouts point at its work folder', () => {
    const args = buildYtDlpArgs({ ...base, quality: 'best' });
    const after = (flag: string) => args[args.indexOf(flag) + 1];
    expect(after('--paths')).toBe(base.workDir);
    expect(after('--output')).toBe('media.%(ext)s');
    // The size limit is the worker's own (see buildYtDlpArgs).
    expect(args).not.toContain('--max-filesize');
    expect(after('--socket-timeout')).toBe('30');
    expect(after('--progress-template')).toBe(`download:${PROGRESS_PREFIX}%(progress)j`);
    const printAt = args.indexOf('--print-to-file');
    expect(args[printAt + 1]).toMatch(/^after_move:.*%\(filepath\)j/);
    expect(args[printAt + 2]).toBe('/data/tmp/x_best.ab12/yt-dlp-result.json');
  });

  it('when the work folder has a percent sign, then the result file name escapes it for yt-dlp', () => {
    const args = buildYtDlpArgs({ ...base, workDir: '/data/100%/tmp', quality: 'best' });
    expect(args[args.indexOf('--print-to-file') + 2]).toBe('/data/100%%/tmp/yt-dlp-result.json');
  });

  it('when ffmpeg is the default, then no --ffmpeg-location; when configured, then it is passed', () => {
    expect(buildYtDlpArgs({ ...base, quality: 'best' })).not.toContain('--ffmpeg-location');
    const args = buildYtDlpArgs({ ...base, quality: 'best', ffmpegPath: '/opt/ffmpeg/bin/ffmpeg' });
    expect(args[args.indexOf('--ffmpeg-location') + 1]).toBe('/opt/ffmpeg/bin/ffmpeg');
  });
});

describe('formatArgs', () => {
  it.each([
    ['best', ['-f', 'bv*+ba/b']],
    ['worst', ['-f', 'bv*+ba/b', '-S', '+res,+size,+br,+fps']],
    ['720p', ['-f', 'bv*+ba/b', '-S', 'res:720']],
    ['480p', ['-f', 'bv*+ba/b', '-S', 'res:480']],
    ['2160p', ['-f', 'bv*+ba/b', '-S', 'res:2160']],
    ['audio', ['-f', 'ba/b', '-x']],
  ] as const)('when quality is %s, then the selection is %j', (quality, expected) => {
    expect(formatArgs(quality)).toEqual(expected);
  });
});

describe('progress', () => {
  it('when a line is one of ours, then it is parsed; when it is yt-dlp chatter, then it is ignored', () => {
    const parsed = parseProgressLine(
      line({
        status: 'downloading',
        downloaded_bytes: 1024,
        total_bytes: null,
        tmpfilename: '/w/media.mp4.part',
      }),
    );
    expect(parsed).toMatchObject({
      status: 'downloading',
      downloaded_bytes: 1024,
      total_bytes: null,
      filename: '/w/media.mp4.part',
    });
    expect(parseProgressLine('[download] Destination: /w/media.mp4')).toBeNull();
    expect(parseProgressLine(`${PROGRESS_PREFIX}{not json`)).toBeNull();
  });

  it('when the exact size is known, then percent is bytes over size, whatever the estimate says', () => {
    expect(
      progressPercent(progress({ downloaded_bytes: 250, total_bytes: 1000, total_bytes_estimate: 5000 })),
    ).toBe(25);
  });

  it('when only fragments are known (HLS), then percent is fragments done over fragment count', () => {
    expect(
      progressPercent(
        progress({ downloaded_bytes: 10, fragment_index: 3, fragment_count: 4, total_bytes_estimate: 1e9 }),
      ),
    ).toBe(75);
  });

  it('when only an estimate is known, then it is used; when nothing is, then percent is unknown', () => {
    expect(progressPercent(progress({ downloaded_bytes: 50, total_bytes_estimate: 200 }))).toBe(25);
    expect(progressPercent(progress({ downloaded_bytes: 50 }))).toBeNull();
    expect(progressPercent(progress({ status: 'finished' }))).toBe(100);
  });

  it('when a merged download starts its audio part, then sizes add up and percent does not go backwards', () => {
    const tracker = new DownloadTracker();
    tracker.update(progress({ filename: 'media.f1.mp4.part', downloaded_bytes: 800, total_bytes: 1000 }));
    tracker.update(
      progress({ filename: 'media.f1.mp4', downloaded_bytes: 1000, total_bytes: 1000, status: 'finished' }),
    );
    const audio = tracker.update(
      progress({ filename: 'media.f2.m4a.part', downloaded_bytes: 100, total_bytes: 400 }),
    );
    expect(audio).toEqual({ percent: 100, bytes: 1400 });
  });

  it('when the first line of a plain file gives its exact size, then bytes count the whole file at once', () => {
    const tracker = new DownloadTracker();
    expect(
      tracker.update(progress({ filename: 'media.mp4.part', downloaded_bytes: 1024, total_bytes: 715834 }))
        .bytes,
    ).toBe(715834);
  });

  it('when HLS fragments arrive, then bytes are what was downloaded, not the estimate', () => {
    const tracker = new DownloadTracker();
    const p = { filename: 'media.mp4.part', total_bytes_estimate: 9e6, fragment_count: 4 };
    tracker.update(progress({ ...p, downloaded_bytes: 1000, fragment_index: 0 }));
    expect(tracker.update(progress({ ...p, downloaded_bytes: 250_000, fragment_index: 1 }))).toEqual({
      percent: 25,
      bytes: 250_000,
    });
  });
});

describe('classifyFailure', () => {
  const exit = { code: 1, stderrTail: '' };
  const final = new Map(FAILURE_KINDS.map((k) => [k.code, k.final]));

  it.each(YT_DLP_MESSAGES)(
    'when yt-dlp says it is %s (%j), then the job error has that code',
    (code, line) => {
      const err = classifyFailure([line], exit);
      expect(err.code).toBe(code);
      expect(err.retryable).toBe(!final.get(code));
      // The reason is yt-dlp's, without advice a user cannot follow (command-line options, bug reports).
      expect(err.message).not.toMatch(/please report|Use --cookies|--list-formats for a list|caused by/);
    },
  );

  it('when the table is read, then every code is dotted, unique and covered by a real yt-dlp message', () => {
    const codes = FAILURE_KINDS.map((k) => k.code);
    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes) expect(code).toMatch(/^[a-z]+\.[a-z0-9_]+$/);
    // Codes the worker raises itself have no yt-dlp pattern.
    const raisedByWorker = ['limits.time', 'ytdlp.failed'];
    const covered = new Set(YT_DLP_MESSAGES.map(([code]) => code));
    expect(codes.filter((c) => !covered.has(c) && !raisedByWorker.includes(c))).toEqual([]);
  });

  it('when YouTube asks for a bot check, then the job fails at once and the message says how to supply cookies', () => {
    const err = classifyFailure([YT_DLP_MESSAGES.find(([c]) => c === 'source.bot_check')![1]], exit);
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/YTDLP_COOKIES_FILE/);
    expect(err.message).toMatch(/PUT \/admin\/cookies/);
    expect(err.message).toMatch(/Sign in to confirm you’re not a bot\)$/);
  });

  it('when yt-dlp reports a 404, then the message quotes its reason without the bug-report advice', () => {
    const err = classifyFailure(
      [
        "ERROR: [generic] None: Unable to download webpage: HTTP Error 404: Not Found (caused by <HTTPError 404: 'Not Found'>); please report this issue on  https://github.com/yt-dlp/yt-dlp/issues?q= , filling out the appropriate issue template. Confirm you are on the latest version using  yt-dlp -U",
      ],
      exit,
    );
    expect(err.message).toBe(
      'the media is not available (removed, never existed, or taken down) (Unable to download webpage: HTTP Error 404: Not Found)',
    );
  });

  it('when the last line says only that it gives up, then an earlier line names the cause', () => {
    const err = classifyFailure(
      [
        'ERROR: [generic] x: Unable to download webpage: HTTP Error 503: Service Unavailable',
        'ERROR: giving up',
      ],
      exit,
    );
    expect(err.code).toBe('network.http_5xx');
  });

  it('when there is no ERROR line, then the last stderr line that is not a warning is the reason', () => {
    const err = classifyFailure([], {
      ...exit,
      code: 2,
      stderrTail: 'yt-dlp: error: no such option: --bogus\nWARNING: x\n',
    });
    expect(err.code).toBe('ytdlp.failed');
    expect(err.message).toBe(
      'yt-dlp failed in a way this service does not know (yt-dlp: error: no such option: --bogus)',
    );
    expect(errorReason('ERROR: [youtube] abcdefghijk: Video unavailable')).toBe('Video unavailable');
  });
});

describe('mediaInfo', () => {
  it('when an audio file carries cover art, then it still has no video stream', () => {
    const info = mediaInfo({
      streams: [
        { codec_type: 'audio', codec_name: 'aac' },
        {
          codec_type: 'video',
          codec_name: 'mjpeg',
          width: 300,
          height: 300,
          disposition: { attached_pic: 1 },
        },
      ],
      format: { duration: '4.0213' },
    });
    expect(info).toEqual({
      duration_s: 4.021,
      width: null,
      height: null,
      video_codec: null,
      audio_codec: 'aac',
    });
  });
});
