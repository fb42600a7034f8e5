import { INVIDIOUS_SITES } from './youtube-invidious.js';

/**
 * Which URLs yt-dlp takes as one YouTube video, and which video, decided the way yt-dlp
 * decides it without a network request: its YouTube extractors' URL patterns, tried in
 * yt-dlp's own order, `YoutubeIE.suitable` (a `list` parameter hands the URL to the playlist
 * extractors), and the first step of the tab, playlist, youtu.be and consent extractors,
 * which with `--no-playlist` (the worker always passes it) turn a URL that carries a video id
 * into that video and anything else into a list. Ported from yt-dlp 2026.08.19
 * (`yt_dlp/extractor/youtube/`); the regex sources keep yt-dlp's spelling so a diff is easy.
 */

export type YouTubeListKind = 'playlist' | 'channel' | 'search' | 'feed';

export type YouTubeVerdict =
  /** One video: yt-dlp downloads the video with this 11-character id. */
  | { kind: 'video'; id: string }
  /** A playlist, channel, search or feed: many videos, or a different one from day to day. */
  | { kind: 'list'; list: YouTubeListKind }
  /** A YouTube URL yt-dlp refuses without a request (a truncated id, a watch page without one). */
  | { kind: 'refused'; reason: string };

/** Python's `\w` (Unicode word characters), which yt-dlp's patterns use for subdomains. */
const W = '[\\p{L}\\p{N}_]';
const INVIDIOUS = INVIDIOUS_SITES.join('|');
const VIDEO_ID = '[0-9A-Za-z_-]{11}';
const PLAYLIST_ID = '(?:(?:PL|LL|EC|UU|FL|RD|UL|TL|PU|OLAK5uy_)[0-9A-Za-z_-]{10,}|RDMM|WL|LL|LM)';
const RESERVED_NAMES =
  'channel|c|user|playlist|watch|w|v|embed|e|live|watch_popup|clip|' +
  'shorts|movies|results|search|shared|hashtag|trending|explore|feed|feeds|' +
  'browse|oembed|get_video_info|iframe_api|s/player|source|' +
  'storefront|oops|index|account|t/terms|about|upload|signin|logout';

const re = (source: string): RegExp => new RegExp(`^(?:${source})`, 'u');

/** `YoutubeIE._VALID_URL` with a scheme (the naked-id form is no URL). */
const YOUTUBE_IE = re(
  '(?:https?://|//)(?:' +
    `(?:(?:(?:${W}+\\.)?[yY][oO][uU][tT][uU][bB][eE](?:-nocookie|kids)?\\.com|` +
    '(?:www\\.)?deturl\\.com/www\\.youtube\\.com|(?:www\\.)?pwnyoutube\\.com|' +
    '(?:www\\.)?hooktube\\.com|(?:www\\.)?yourepeat\\.com|tube\\.majestyc\\.net|' +
    `${INVIDIOUS}|youtube\\.googleapis\\.com)/` +
    '(?:.*?#/)?' +
    '(?:(?:(?:v|embed|e|shorts|live)/(?!videoseries|live_stream))' +
    '|(?:(?:(?:watch|movie)(?:_popup)?(?:\\.php)?/?)?(?:\\?|#!?)(?:.*?[&;])??v=)))' +
    `|(?:youtu\\.be|vid\\.plus|zwearz\\.com/watch|${INVIDIOUS})/` +
    '|(?:www\\.)?cleanvideosearch\\.com/media/action/yt/watch\\?videoId=' +
    `)(?<id>${VIDEO_ID})`,
);
const TAB = re(
  `https?://(?!consent\\.)(?:${W}+\\.)?(?:youtube(?:kids)?\\.com|${INVIDIOUS})/` +
    '(?:(?<channelType>channel|c|user|browse)/' +
    '|(?<notChannel>feed/|hashtag/|(?:playlist|watch)\\?.*?\\blist=)' +
    `|(?!(?:${RESERVED_NAMES})\\b))` +
    '(?<id>[^/?#&]+)',
);
const PLAYLIST = re(
  `(?:https?://)?(?:${W}+\\.)?(?:youtube(?:kids)?\\.com|${INVIDIOUS})/.*?\\?.*?\\blist=(?<id>${PLAYLIST_ID})`,
);
const YT_BE = re(`https?://youtu\\.be/(?<id>${VIDEO_ID})/*?.*?\\blist=${PLAYLIST_ID}`);
const CLIP = re('https?://(?:www\\.)?youtube\\.com/clip/[^/?#]+');
const CONSENT = re('https?://consent\\.youtube\\.com/m\\?');
const LIVESTREAM_EMBED = re(
  `https?://(?:${W}+\\.)?youtube\\.com/embed/live_stream/?\\?(?:[^#]+&)?channel=[^&#]+`,
);
const MUSIC_SEARCH = re(
  'https?://music\\.youtube\\.com/search\\?([^#]+&)?(?:search_query|q)=(?:[^&]+)(?:[&#]|$)',
);
const RECOMMENDED = re('https?://(?:www\\.)?youtube\\.com/?(?:[?#]|$)');
const SEARCH = re(
  'https?://(?:www\\.)?youtube\\.com/(?:results|search)\\?([^#]+&)?(?:search_query|q)=(?:[^&]+)(?:[&#]|$)',
);
const SHORTS_AUDIO_PIVOT = re(`https?://(?:www\\.)?youtube\\.com/source/[\\p{L}\\p{N}_-]{11}/shorts`);
const TRUNCATED_ID = re('https?://(?:www\\.)?youtube\\.com/watch\\?v=[0-9A-Za-z_-]{1,10}$');
const TRUNCATED_URL = re(
  `(?:https?://)?(?:${W}+\\.)?[yY][oO][uU][tT][uU][bB][eE](?:-nocookie)?\\.com/` +
    '(?:watch\\?(?:feature=[a-z_]+|annotation_id=annotation_[^&]+|x-yt-cl=[0-9]+|hl=[^&]*|t=[0-9]+)?' +
    '|attribution_link\\?a=[^&]+)$',
);
const MUSIC_URL = /^(?:https?:\/\/)?music\.youtube\.com\//;
/** `url_or_none`: what the consent page's `continue` must look like to be followed. */
const URL_LIKE = /^(?:(?:https?|rtm(?:pt?[es]?|fp)|ftps?|wss?):)?\/\//;

/** `sanitize_url`, as yt-dlp applies it to every URL an extractor hands on. */
const sanitize = (url: string): string =>
  url.startsWith('//') ? `https:${url}` : url.replace(/^httpss:\/\//, 'https://');

/** Python's `urllib.parse.unquote`: %XX as UTF-8 bytes, bad sequences replaced, lone % kept. */
function unquote(text: string): string {
  if (!text.includes('%')) return text;
  const bytes: number[] = [];
  const encoder = new TextEncoder();
  for (let i = 0; i < text.length;) {
    const hex = text.slice(i + 1, i + 3);
    if (text[i] === '%' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 3;
    } else {
      const cp = text.codePointAt(i) as number;
      bytes.push(...encoder.encode(String.fromCodePoint(cp)));
      i += cp > 0xffff ? 2 : 1;
    }
  }
  return new TextDecoder('utf-8', { fatal: false }).decode(new Uint8Array(bytes));
}

/** yt-dlp's `parse_qs(url)`: the query before any fragment, `&`-separated, blank values dropped. */
function parseQs(url: string): Map<string, string[]> {
  const beforeFragment = url.split('#', 1)[0] ?? '';
  const at = beforeFragment.indexOf('?');
  const out = new Map<string, string[]>();
  if (at < 0) return out;
  for (const field of beforeFragment.slice(at + 1).split('&')) {
    const eq = field.indexOf('=');
    if (eq < 0 || eq === field.length - 1) continue;
    const name = unquote(field.slice(0, eq).replaceAll('+', ' '));
    const value = unquote(field.slice(eq + 1).replaceAll('+', ' '));
    out.set(name, [...(out.get(name) ?? []), value]);
  }
  return out;
}

const first = (qs: Map<string, string[]>, key: string): string | undefined => qs.get(key)?.[0];

/** `YoutubeIE.suitable`: its pattern, and no `list` (those URLs belong to the playlist extractors). */
function youtubeIeId(url: string): string | null {
  if (first(parseQs(url), 'list')) return null;
  return YOUTUBE_IE.exec(url)?.groups?.id ?? null;
}

/** `url_result(watch?v=<v>, YoutubeIE)`: yt-dlp extracts it only when YoutubeIE takes that URL. */
function forcedWatch(videoId: string): YouTubeVerdict {
  const id = youtubeIeId(`https://www.youtube.com/watch?v=${videoId}`);
  return id
    ? { kind: 'video', id }
    : { kind: 'refused', reason: `"${videoId.slice(0, 40)}" is not a YouTube video id` };
}

/**
 * `urlunparse(urlparse(url)._replace(netloc='www.youtube.com'))`: Python drops an empty query,
 * fragment or `;params` on the way back.
 */
function pyRoundTrip(url: string): string {
  const hashAt = url.indexOf('#');
  const fragment = hashAt < 0 ? '' : url.slice(hashAt + 1);
  const beforeHash = hashAt < 0 ? url : url.slice(0, hashAt);
  const queryAt = beforeHash.indexOf('?');
  const query = queryAt < 0 ? '' : beforeHash.slice(queryAt + 1);
  const rest = queryAt < 0 ? beforeHash : beforeHash.slice(0, queryAt);
  const m = /^([a-z]+:)\/\/[^/]*(.*)$/i.exec(rest);
  if (!m) return url;
  let path = m[2] ?? '';
  if (/;[^/]*$/.test(path) && path.endsWith(';')) path = path.slice(0, -1);
  return `${m[1]}//www.youtube.com${path}${query ? `?${query}` : ''}${fragment ? `#${fragment}` : ''}`;
}

/** `YoutubeTabIE._real_extract` up to its first request, with `--no-playlist`. */
function tabVerdict(url: string, match: RegExpExecArray): YouTubeVerdict {
  const { channelType, notChannel = '', id = '' } = match.groups ?? {};
  const isChannel = !notChannel;
  // yt-dlp re-reads the URL after putting www.youtube.com in it: an empty `?` is lost then,
  // and with it the pattern's match (yt-dlp fails on such a URL).
  if (!TAB.test(pyRoundTrip(url)))
    return { kind: 'refused', reason: 'a tab URL yt-dlp cannot read back (an empty query before "#")' };
  // A YouTube Music album or playlist is resolved before the query is read (a browse page
  // becomes its channel page, with the same query).
  if (isChannel && MUSIC_URL.test(url) && /^(VL|MP)/.test(id)) return { kind: 'list', list: 'playlist' };
  const qs = parseQs(url);
  const videoId = first(qs, 'v');
  if (!videoId && notChannel.startsWith('watch'))
    return first(qs, 'list')
      ? { kind: 'list', list: 'playlist' }
      : { kind: 'refused', reason: 'a watch URL without a video id' };
  // `_yes_playlist(list, v)` is false with --no-playlist whenever there is a video id.
  if (videoId) return forcedWatch(videoId);
  if (channelType || !notChannel) return { kind: 'list', list: 'channel' };
  return {
    kind: 'list',
    list: notChannel.startsWith('feed/') || notChannel.startsWith('hashtag/') ? 'feed' : 'playlist',
  };
}

/** Python's `urllib.parse.quote_plus`. */
function quotePlus(text: string): string {
  let out = '';
  for (const byte of new TextEncoder().encode(text)) {
    const ch = String.fromCharCode(byte);
    if (/[A-Za-z0-9_.~-]/.test(ch)) out += ch;
    else if (ch === ' ') out += '+';
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * `YoutubePlaylistIE`: hands `playlist?<the URL's query>` (or `?list=<id>` without one) to the
 * tab extractor, which takes it only when that query still has a `list` (this pattern also
 * finds `list=` in a fragment, which the query then lacks).
 */
function playlistVerdict(url: string, playlistId: string): YouTubeVerdict {
  const qs = parseQs(url);
  const query =
    qs.size > 0
      ? [...qs].flatMap(([k, vs]) => vs.map((v) => `${quotePlus(k)}=${quotePlus(v)}`)).join('&')
      : `list=${playlistId}`;
  const target = `https://www.youtube.com/playlist?${query}`;
  const tab = youtubeIeId(target) ? null : TAB.exec(target);
  return tab ? tabVerdict(target, tab) : { kind: 'refused', reason: 'a playlist URL without a playlist id' };
}

/** The search URL extractors read `search_query` or `q` from the query (a blank one fails them). */
function searchVerdict(url: string): YouTubeVerdict {
  const qs = parseQs(url);
  return first(qs, 'search_query') || first(qs, 'q')
    ? { kind: 'list', list: 'search' }
    : { kind: 'refused', reason: 'a search URL without a search' };
}

/**
 * What yt-dlp does with `url` among its YouTube extractors, tried in its order (the first that
 * takes the URL decides), or null when none of them takes it (another extractor, or the
 * generic one, will) or when it is a YouTube page with no video id of its own (a clip).
 * `url` is matched as given: pass the parsed URL's `href`.
 */
export function youtubeVerdict(url: string, depth = 0): YouTubeVerdict | null {
  if (CLIP.test(url)) return null;
  if (CONSENT.test(url)) {
    const target = parseQs(url).get('continue')?.at(-1)?.trim();
    if (!target || !URL_LIKE.test(target) || depth > 3)
      return { kind: 'refused', reason: 'a cookie consent URL without a page to continue to' };
    return youtubeVerdict(sanitize(target), depth + 1);
  }
  const id = youtubeIeId(url);
  if (id) return { kind: 'video', id };
  if (LIVESTREAM_EMBED.test(url)) return { kind: 'list', list: 'channel' };
  if (MUSIC_SEARCH.test(url)) return searchVerdict(url);
  // YoutubeTabIE takes what YoutubeIE does not; YoutubePlaylistIE what neither takes, without `v`.
  const tab = TAB.exec(url);
  const playlist = tab || first(parseQs(url), 'v') ? null : PLAYLIST.exec(url);
  if (playlist) return playlistVerdict(url, playlist.groups?.id ?? '');
  if (RECOMMENDED.test(url)) return { kind: 'list', list: 'feed' };
  if (SEARCH.test(url)) return searchVerdict(url);
  if (SHORTS_AUDIO_PIVOT.test(url)) return { kind: 'list', list: 'feed' };
  if (tab) return tabVerdict(url, tab);
  if (TRUNCATED_ID.test(url)) return { kind: 'refused', reason: 'an incomplete YouTube video id' };
  if (TRUNCATED_URL.test(url))
    return { kind: 'refused', reason: 'a watch URL without a video id (was the URL cut at an "&"?)' };
  const ytBe = YT_BE.exec(url);
  if (ytBe?.groups?.id) return forcedWatch(ytBe.groups.id);
  return null;
}
