/**
 * yt-dlp's error lines as it prints them, one or more per failure code, taken from its source
 * (`extractor/common.py`, `extractor/youtube/_video.py`, `YoutubeDL.py`, `downloader/`,
 * `networking/exceptions.py`) and from real runs. Shared by the unit test of the table and the
 * worker test that has a fake yt-dlp print each of them.
 */
export const YT_DLP_MESSAGES: readonly (readonly [code: string, line: string])[] = [
  [
    'tool.missing',
    'ERROR: Postprocessing: ffprobe and ffmpeg not found. Please install or provide the path using --ffmpeg-location',
  ],
  [
    'source.bot_check',
    'ERROR: [youtube] dQw4w9WgXcQ: Sign in to confirm you’re not a bot. Use --cookies-from-browser or --cookies for the authentication. See  https://github.com/yt-dlp/yt-dlp/wiki/FAQ#how-do-i-pass-cookies-to-yt-dlp  for how to manually pass cookies. Also see  https://github.com/yt-dlp/yt-dlp/wiki/Extractors#exporting-youtube-cookies  for tips on effectively exporting YouTube cookies',
  ],
  [
    'source.bot_check',
    'ERROR: [youtube] dQw4w9WgXcQ: Video unavailable. YouTube is requiring a captcha challenge before playback',
  ],
  [
    'source.age_restricted',
    'ERROR: [youtube] abcdefghijk: Sign in to confirm your age. This video may be inappropriate for some users. Use --cookies-from-browser or --cookies for the authentication. See  https://github.com/yt-dlp/yt-dlp/wiki/FAQ#how-do-i-pass-cookies-to-yt-dlp  for how to manually pass cookies',
  ],
  [
    'source.members_only',
    'ERROR: [youtube] abcdefghijk: Join this channel to get access to members-only content like this video, and other exclusive perks.',
  ],
  [
    'source.private',
    "ERROR: [youtube] abcdefghijk: Private video. Sign in if you've been granted access to this video. Use --cookies-from-browser or --cookies for the authentication.",
  ],
  [
    'source.login_required',
    'ERROR: [vimeo] 123456: This video is only available for registered users. Use --cookies, --cookies-from-browser, --username and --password, --netrc-cmd, or --netrc (vimeo) to provide account credentials.',
  ],
  [
    'source.login_required',
    'ERROR: [youtube:tab] UCxyz: Login details are needed to download this content. Use --cookies-from-browser or --cookies for the authentication.',
  ],
  [
    'source.geo_blocked',
    'ERROR: [youtube] abcdefghijk: The uploader has not made this video available in your country',
  ],
  [
    'source.geo_blocked',
    'ERROR: [generic] clip: This video is not available from your location due to geo restriction',
  ],
  [
    'source.rate_limited',
    "ERROR: [youtube] abcdefghijk: This content isn't available, try again later. The current session has been rate-limited by YouTube for up to an hour. It is recommended to use `-t sleep` to add a delay between video requests to avoid exceeding the rate limit.",
  ],
  [
    'source.rate_limited',
    'ERROR: [generic] clip: Unable to download webpage: HTTP Error 429: Too Many Requests (caused by <HTTPError 429: Too Many Requests>)',
  ],
  ['source.not_started', 'ERROR: [youtube] abcdefghijk: This live event will begin in a few moments.'],
  ['source.not_started', 'ERROR: [youtube] abcdefghijk: Premieres in 2 hours'],
  [
    'source.drm',
    'ERROR: [generic] clip: This video is DRM protected and only images are available for download. Use --list-formats to see them',
  ],
  ['source.unsupported', 'ERROR: Unsupported URL: https://example.com/'],
  ['source.no_formats', 'ERROR: [generic] page: No video formats found!'],
  [
    'source.no_formats',
    'ERROR: [youtube] abcdefghijk: Requested format is not available. Use --list-formats for a list of available formats',
  ],
  [
    'source.forbidden',
    "ERROR: [generic] None: Unable to download webpage: HTTP Error 403: Forbidden (caused by <HTTPError 403: 'Forbidden'>); please report this issue on  https://github.com/yt-dlp/yt-dlp/issues?q= , filling out the appropriate issue template.",
  ],
  [
    'source.host_not_found',
    "ERROR: [generic] x: Unable to download webpage: [Errno -2] Name or service not known (caused by TransportError('[Errno -2] Name or service not known'))",
  ],
  [
    'source.unavailable',
    'ERROR: [youtube] abcdefghijk: Video unavailable. This video has been removed by the uploader',
  ],
  [
    'source.unavailable',
    'ERROR: [youtube] abcdefghijk: Video unavailable. This video is no longer available because the YouTube account associated with this video has been terminated.',
  ],
  [
    'source.unavailable',
    'ERROR: [generic] nothing: Unable to download webpage: HTTP Error 404: Not Found (caused by <HTTPError 404: Not Found>)',
  ],
  [
    'network.dns',
    "ERROR: [generic] x: Unable to download webpage: [Errno -3] Temporary failure in name resolution (caused by TransportError('[Errno -3] Temporary failure in name resolution'))",
  ],
  [
    'network.proxy',
    "ERROR: [generic] x: Unable to download webpage: ('Unable to connect to proxy', OSError('Tunnel connection failed: 407 Proxy Authentication Required')) (caused by ProxyError(\"('Unable to connect to proxy', OSError('Tunnel connection failed: 407 Proxy Authentication Required'))\"))",
  ],
  [
    'network.tls',
    'ERROR: [generic] x: Unable to download webpage: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1006) (caused by CertificateVerifyError())',
  ],
  ['network.timeout', 'ERROR: [generic] x: Unable to download webpage: The read operation timed out'],
  [
    'network.refused',
    "ERROR: [generic] x: Unable to download webpage: [Errno 111] Connection refused (caused by TransportError('[Errno 111] Connection refused'))",
  ],
  [
    'network.unreachable',
    "ERROR: [generic] x: Unable to download webpage: [Errno 101] Network is unreachable (caused by TransportError('[Errno 101] Network is unreachable'))",
  ],
  ['network.http_5xx', 'ERROR: [generic] x: Unable to download webpage: HTTP Error 503: Service Unavailable'],
  ['network.interrupted', 'ERROR: fragment 1 not found, unable to continue'],
  [
    'network.interrupted',
    'ERROR: unable to download video data: <urlopen error [Errno 104] Connection reset by peer>',
  ],
  ['network.interrupted', 'ERROR: 1024 bytes read, 4096 more expected'],
  [
    'network.error',
    "ERROR: [generic] x: Unable to download webpage: [Errno 71] Protocol error (caused by TransportError('[Errno 71] Protocol error'))",
  ],
  ['limits.size', 'ERROR: File is larger than max-filesize (1048576 bytes > 1024 bytes). Aborting.'],
  ['ytdlp.failed', 'ERROR: something nobody has seen before'],
];
