import { createHash } from 'node:crypto';

/** Qualities of `POST /download`: an upper bound on the shorter side of the video, or `audio`. */
export const QUALITIES = [
  'best',
  'worst',
  '2160p',
  '1440p',
  '1080p',
  '720p',
  '480p',
  '360p',
  '240p',
  '144p',
  'audio',
] as const;
export type Quality = (typeof QUALITIES)[number];

const YOUTUBE_HOSTS = new Set([
  'youtube.com',
  'www.youtube.com',
  'm.youtube.com',
  'music.youtube.com',
  'youtube-nocookie.com',
  'www.youtube-nocookie.com',
]);
const VIDEO_ID = /^[A-Za-z0-9_-]{11}$/;
const PATH_FORMS = ['shorts', 'embed', 'live', 'v', 'e'];

/** The 11-character video id of any YouTube URL form, or null for other URLs. */
export function youtubeVideoId(url: URL): string | null {
  const host = url.hostname.toLowerCase();
  const segments = url.pathname.split('/').filter(Boolean);
  let candidate: string | undefined;
  if (host === 'youtu.be' || host === 'www.youtu.be') {
    candidate = segments[0];
  } else if (YOUTUBE_HOSTS.has(host)) {
    if (segments[0] === 'watch' || segments.length === 0) candidate = url.searchParams.get('v') ?? undefined;
    else if (segments[0] && PATH_FORMS.includes(segments[0])) candidate = segments[1];
  }
  return candidate && VIDEO_ID.test(candidate) ? candidate : null;
}

/**
 * The canonical form of a URL for caching: lower-case scheme and host (the URL parser does
 * that), default port dropped, no fragment, no `utm_*` parameters, parameters sorted.
 */
export function canonicalUrl(url: URL): string {
  const out = new URL(url.href);
  out.hash = '';
  const params = [...out.searchParams.entries()].filter(([k]) => !k.toLowerCase().startsWith('utm_'));
  params.sort(([a, av], [b, bv]) => (a === b ? (av < bv ? -1 : av > bv ? 1 : 0) : a < b ? -1 : 1));
  out.search = new URLSearchParams(params).toString();
  return out.href;
}

export function sha256Hex(input: string | Buffer): string {
  return createHash('sha256').update(input).digest('hex');
}

/** `mediaId`: the YouTube video id, or `u` + the first 16 hex of sha256 of the canonical URL. */
export function mediaId(url: URL): string {
  return youtubeVideoId(url) ?? `u${sha256Hex(canonicalUrl(url)).slice(0, 16)}`;
}

export function downloadJobId(url: URL, quality: Quality): string {
  return `${mediaId(url)}_${quality}`;
}

/** The shorter-side bound of a quality such as `720p`, or null for best, worst and audio. */
export function qualityHeight(quality: Quality): number | null {
  const m = /^(\d+)p$/.exec(quality);
  return m ? Number(m[1]) : null;
}
