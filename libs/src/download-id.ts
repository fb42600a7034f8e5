import { createHash } from 'node:crypto';
import { badRequest } from './errors.js';
import { youtubeVerdict, type YouTubeListKind } from './youtube-url.js';

export { youtubeVerdict, type YouTubeListKind, type YouTubeVerdict } from './youtube-url.js';

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

/** A YouTube video id; no other media id has 11 characters (`u` + 16 hex has 17). */
const YOUTUBE_ID = /^[A-Za-z0-9_-]{11}$/;

/** What a download URL stands for: its media id, and the URL the worker hands yt-dlp for it. */
export interface MediaTarget {
  mediaId: string;
  source: 'youtube' | 'url';
  /** A YouTube id's canonical watch URL, or the canonical form of any other URL. */
  fetchUrl: string;
}

const LIST_WORDS: Record<YouTubeListKind, string> = {
  playlist: 'a YouTube playlist',
  channel: 'a YouTube channel or one of its tabs',
  search: 'YouTube search results',
  feed: 'a YouTube feed',
};

/** The one URL yt-dlp is given for a YouTube id, whatever form the user sent. */
export function youtubeWatchUrl(id: string): string {
  return `https://www.youtube.com/watch?v=${id}`;
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

function refuseList(list: YouTubeListKind) {
  return badRequest(
    'url.playlist',
    `this URL is ${LIST_WORDS[list]}, not one video; submit the URL of a single video (https://www.youtube.com/watch?v=<id>)`,
    { list },
  );
}

/**
 * Which media a URL is, by yt-dlp's rules (`youtube-url.ts`): a URL yt-dlp takes as one
 * YouTube video is that video's id, fetched from its canonical watch URL, so no URL form can
 * put another video under the id; any other URL is `u` + the first 16 hex of sha256 of its
 * canonical form, which is what the worker fetches. A playlist, channel, search or feed is a
 * 400 (`url.playlist`), a YouTube URL yt-dlp refuses is a 400 (`url.not_a_video`), and so
 * is a URL with a user name or password (it would be stored in the record).
 */
export function resolveMediaTarget(url: URL): MediaTarget {
  if (url.username || url.password)
    throw badRequest('download.invalid_url', 'url must not contain a user name or password');
  const verdict = youtubeVerdict(url.href);
  if (verdict?.kind === 'video')
    return { mediaId: verdict.id, source: 'youtube', fetchUrl: youtubeWatchUrl(verdict.id) };
  if (verdict?.kind === 'list') throw refuseList(verdict.list);
  if (verdict?.kind === 'refused')
    throw badRequest(
      'url.not_a_video',
      `yt-dlp does not take this YouTube URL as a video: ${verdict.reason}`,
    );
  const canonical = canonicalUrl(url);
  // Canonicalising drops the fragment: what yt-dlp is then given must not be a list either.
  const fetched = youtubeVerdict(canonical);
  if (fetched?.kind === 'list') throw refuseList(fetched.list);
  return { mediaId: `u${sha256Hex(canonical).slice(0, 16)}`, source: 'url', fetchUrl: canonical };
}

/** The YouTube video a URL is by yt-dlp's rules, or null for any other URL (lists included). */
export function youtubeVideoId(url: URL): string | null {
  const verdict = youtubeVerdict(url.href);
  return verdict?.kind === 'video' ? verdict.id : null;
}

/** `mediaId` of DESIGN.md; throws the 400s of `resolveMediaTarget`. */
export function mediaId(url: URL): string {
  return resolveMediaTarget(url).mediaId;
}

export function downloadJobId(url: URL, quality: Quality): string {
  return `${mediaId(url)}_${quality}`;
}

/** The media id part of a download job id `<mediaId>_<quality>` (a quality has no `_`). */
export function mediaIdOfJob(jobId: string): string {
  const at = jobId.lastIndexOf('_');
  return at < 0 ? jobId : jobId.slice(0, at);
}

/**
 * The URL the worker gives yt-dlp for a download job. The id decides, not the URL the user
 * sent: a YouTube id is always fetched from its canonical watch URL, so a record can never
 * bring another video under that id; any other job fetches the canonical form of its URL,
 * the string its id is the hash of.
 */
export function downloadFetchUrl(jobId: string, requestUrl: string): string {
  const media = mediaIdOfJob(jobId);
  return YOUTUBE_ID.test(media) ? youtubeWatchUrl(media) : canonicalUrl(new URL(requestUrl));
}

/** The shorter-side bound of a quality such as `720p`, or null for best, worst and audio. */
export function qualityHeight(quality: Quality): number | null {
  const m = /^(\d+)p$/.exec(quality);
  return m ? Number(m[1]) : null;
}
