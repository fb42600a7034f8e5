import { describe, expect, it } from 'vitest';
import {
  AppError,
  canonicalUrl,
  downloadFetchUrl,
  downloadJobId,
  mediaId,
  mediaIdOfJob,
  resolveMediaTarget,
  sha256Hex,
  youtubeVerdict,
  youtubeVideoId,
} from '@media-jobs/libs';
import { HASHED, LIST, REFUSED, URL_FORMS, type Expected } from './youtube-url-forms.js';

const ID = 'dQw4w9WgXcQ';
const ELEVEN = /^[A-Za-z0-9_-]{11}$/;

function refusal(url: URL): AppError {
  try {
    resolveMediaTarget(url);
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error(`${url.href} was not refused`);
}

/** The whole contract of one form: verdict, media id, what the worker fetches, or the 400. */
function expectForm(raw: string, expected: Expected): void {
  const url = new URL(raw);
  if (expected === LIST || expected === REFUSED) {
    expect(youtubeVerdict(url.href)?.kind).toBe(expected === LIST ? 'list' : 'refused');
    const err = refusal(url);
    expect(err).toMatchObject({ status: 400, code: expected === LIST ? 'url.playlist' : 'url.not_a_video' });
    expect(youtubeVideoId(url)).toBeNull();
  } else if (expected === HASHED) {
    expect(youtubeVerdict(url.href)).toBeNull();
    const target = resolveMediaTarget(url);
    expect(target.mediaId).toBe(`u${sha256Hex(canonicalUrl(url)).slice(0, 16)}`);
    expect(target.mediaId).not.toMatch(ELEVEN);
    expect(target.fetchUrl).toBe(canonicalUrl(url));
    expect(downloadFetchUrl(`${target.mediaId}_best`, raw)).toBe(target.fetchUrl);
  } else {
    expect(youtubeVerdict(url.href)).toEqual({ kind: 'video', id: expected });
    const watch = `https://www.youtube.com/watch?v=${expected}`;
    expect(resolveMediaTarget(url)).toEqual({ mediaId: expected, source: 'youtube', fetchUrl: watch });
    expect(downloadJobId(url, '720p')).toBe(`${expected}_720p`);
    expect(downloadFetchUrl(`${expected}_720p`, raw)).toBe(watch);
  }
}

describe('media id of a URL, by yt-dlp 2026.08.19 rules', () => {
  const total = URL_FORMS.reduce((n, g) => n + g.forms.length, 0);

  it('when the table is counted, then it holds at least 200 URL forms, most of them from yt-dlp tests', () => {
    const fromYtDlp = URL_FORMS.filter((g) => g.group.startsWith('yt-dlp')).reduce(
      (n, g) => n + g.forms.length,
      0,
    );
    expect(total).toBeGreaterThanOrEqual(200);
    expect(fromYtDlp * 2).toBeGreaterThan(total);
    expect(new Set(URL_FORMS.flatMap((g) => g.forms.map(([u]) => u))).size).toBe(total);
  });

  for (const { group, forms } of URL_FORMS) {
    describe(group, () => {
      it.each(forms)('when %s is submitted, then it is %s', (url, expected) => {
        expectForm(url, expected);
      });
    });
  }

  it.each([
    // Scheme and host are case-insensitive and the default port is no part of a URL (RFC 3986):
    // the URL parser normalises them before the rules apply, as yt-dlp gets the canonical URL.
    [`HTTPS://WWW.YOUTUBE.COM/watch?v=${ID}#t=1`, ID],
    [`https://WWW.YouTube.COM/shorts/${ID}`, ID],
    [`https://www.youtube.com:443/watch?v=${ID}`, ID],
    [`http://youtu.be:80/${ID}`, ID],
    [`https://YOUTU.BE/${ID}?si=x`, ID],
    ['HTTPS://WWW.YOUTUBE.COM/embed/videoseries?list=PL6IaIsEjSbf96XFRuNccS_RuEXwNdsoEu', LIST],
    ['https://WWW.YOUTUBE.COM/', LIST],
  ] as const)('when %s is submitted, then the parsed form is %s', (url, expected) => {
    expectForm(url, expected);
  });

  it.each([
    `https://user:pass@www.youtube.com/watch?v=${ID}`,
    `https://www.youtube.com@evil.example/watch?v=${ID}`,
    'https://token@example.com/clip.mp4',
  ])('when %s carries a user name or password, then it is a 400', (url) => {
    expect(refusal(new URL(url))).toMatchObject({ status: 400, code: 'download.invalid_url' });
  });

  it('when a URL names a list, then the 400 says which kind and asks for a video URL', () => {
    const err = refusal(
      new URL('https://www.youtube.com/embed/live_stream?channel=UC2_KI6RB__jGdlnK6dvFEZA'),
    );
    expect(err.details).toEqual({ list: 'channel' });
    expect(err.message).toMatch(/channel.*not one video.*watch\?v=/);
    expect(refusal(new URL('https://www.youtube.com/results?search_query=cats')).details).toEqual({
      list: 'search',
    });
  });

  it('when the words yt-dlp refuses as ids (videoseries, live_stream) appear, then no URL claims them', () => {
    const all = URL_FORMS.flatMap((g) => g.forms.map(([u]) => u));
    const claimed = all.map((u) => youtubeVerdict(new URL(u).href)).filter((v) => v?.kind === 'video');
    expect(claimed.map((v) => (v as { id: string }).id)).not.toContain('videoseries');
    expect(claimed.map((v) => (v as { id: string }).id)).not.toContain('live_stream');
  });
});

describe('what the worker fetches for a job', () => {
  it('when a job has a YouTube id, then it fetches that id from its watch URL whatever its request URL says', () => {
    expect(downloadFetchUrl(`${ID}_best`, 'https://example.com/another-video')).toBe(
      `https://www.youtube.com/watch?v=${ID}`,
    );
    // A YouTube id may hold `_`: the quality is what follows the last one.
    expect(mediaIdOfJob('a_b-c_d_e_f_720p')).toBe('a_b-c_d_e_f');
    expect(downloadFetchUrl('a_b-c_d_e_f_720p', 'https://youtu.be/a_b-c_d_e_f')).toBe(
      'https://www.youtube.com/watch?v=a_b-c_d_e_f',
    );
  });

  it('when a job has a hashed id, then it fetches the canonical URL the id is the hash of', () => {
    const url = 'https://Example.com/v/clip.mp4?b=2&a=1&utm_source=x#frag';
    const id = downloadJobId(new URL(url), 'best');
    expect(downloadFetchUrl(id, url)).toBe('https://example.com/v/clip.mp4?a=1&b=2');
    expect(mediaIdOfJob(id)).toBe(`u${sha256Hex('https://example.com/v/clip.mp4?a=1&b=2').slice(0, 16)}`);
  });
});

describe('canonicalUrl and mediaId', () => {
  it('when URLs differ only in case of host, fragment, utm parameters or query order, then they map to one id', () => {
    const forms = [
      'https://Example.COM/v/clip.mp4?b=2&a=1',
      'https://example.com/v/clip.mp4?a=1&b=2#frag',
      'https://example.com:443/v/clip.mp4?utm_source=x&a=1&UTM_medium=y&b=2',
    ];
    const ids = forms.map((u) => mediaId(new URL(u)));
    expect(new Set(ids).size).toBe(1);
    expect(canonicalUrl(new URL(forms[2]!))).toBe('https://example.com/v/clip.mp4?a=1&b=2');
    expect(ids[0]).toBe(`u${sha256Hex('https://example.com/v/clip.mp4?a=1&b=2').slice(0, 16)}`);
  });

  it('when the path or a real parameter differs, then the ids differ', () => {
    expect(mediaId(new URL('https://example.com/a.mp4'))).not.toBe(
      mediaId(new URL('https://example.com/b.mp4')),
    );
    expect(mediaId(new URL('https://example.com/a.mp4?x=1'))).not.toBe(
      mediaId(new URL('https://example.com/a.mp4?x=2')),
    );
  });

  it('when a job id is made, then it is <mediaId>_<quality> with only allowed characters', () => {
    expect(downloadJobId(new URL(`https://youtu.be/${ID}`), '720p')).toBe(`${ID}_720p`);
    expect(downloadJobId(new URL('https://example.com/a.mp4'), 'audio')).toMatch(/^u[0-9a-f]{16}_audio$/);
  });
});
