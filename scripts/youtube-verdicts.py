"""What yt-dlp itself does with each URL, offline: the source of libs/test/youtube-url-forms.ts.

Run it with the Python that has the yt-dlp to compare against (a pip or venv install):

    echo '["https://youtu.be/jNQXAC9IVRw?list=PL..."]' | python3 scripts/youtube-verdicts.py

For each URL it takes the first extractor that accepts it, in yt-dlp's own order, and follows
the url_result chain the YouTube tab, playlist, youtu.be and consent extractors return before
any request, with --no-playlist as the worker runs it. A proxy on a closed port makes sure no
request leaves the machine: an extractor that would need one is classified by its kind.
Prints one JSON object per URL: {"url", "expected", "chain"}, where expected is the video id,
"list", "refused" or "hashed" (no YouTube extractor takes it as one video).
"""

import json
import sys

from yt_dlp import YoutubeDL
from yt_dlp.utils import ExtractorError, sanitize_url, unsmuggle_url

ydl = YoutubeDL({'noplaylist': True, 'quiet': True, 'no_warnings': True, 'proxy': 'http://127.0.0.1:9',
                 'socket_timeout': 1, 'extractor_retries': 0, 'retries': 0})
IES = list(ydl._ies.items())
LIST_IES = {'YoutubeTab', 'YoutubePlaylist', 'YoutubeSearchURL', 'YoutubeMusicSearchURL', 'YoutubeRecommended',
            'YoutubeLivestreamEmbed', 'YoutubeShortsAudioPivot'}


def first(url, ie_key=None):
    for key, ie in IES:
        if ie_key and key != ie_key:
            continue
        if ie.suitable(url):
            return key, ie
    return None, None


def resolve(url, ie_key=None, chain=()):
    url = sanitize_url(url)
    key, ie = first(url, ie_key)
    chain = chain + (key,)
    if key is None:
        return 'refused', chain
    if key == 'Youtube':
        return ie._match_id(url), chain
    if not key.startswith('Youtube'):
        return 'hashed', chain
    try:
        res = ydl.get_info_extractor(key).extract(url)
    except (AttributeError, TypeError, KeyError, IndexError):
        return 'refused', chain  # yt-dlp itself fails on the URL
    except ExtractorError as e:
        if e.expected and not e.cause:
            return 'refused', chain
        return ('list' if key in LIST_IES else 'hashed'), chain  # it would need a request
    if res.get('_type') in ('url', 'url_transparent'):
        return resolve(unsmuggle_url(res['url'], {})[0], res.get('ie_key'), chain)
    return ('list' if res.get('_type') == 'playlist' else 'hashed'), chain


for url in json.load(sys.stdin):
    expected, chain = resolve(url)
    print(json.dumps({'url': url, 'expected': expected, 'chain': chain}, ensure_ascii=False))
