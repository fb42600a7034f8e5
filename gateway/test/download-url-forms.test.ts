import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { startPlatform, type Platform } from '@media-jobs/libs/testing';
import { startGateway, type Gateway } from '../src/gateway.js';

// No worker runs here: YouTube URLs are only submitted, never fetched (no test may reach YouTube).
let platform: Platform;
let gateway: Gateway;
let redis: Redis;

beforeAll(async () => {
  platform = await startPlatform();
  // ALLOW_PRIVATE_URLS=false: a YouTube id is fetched from www.youtube.com, so no DNS check of
  // the submitted host is due, and none may hold the answer up.
  gateway = await startGateway(platform.config({ ALLOW_PRIVATE_URLS: 'false' }));
  redis = new Redis(platform.redis.url);
});

afterAll(async () => {
  await gateway?.stop();
  redis?.disconnect();
  await platform?.close();
});

async function post(url: string, quality?: string) {
  const res = await fetch(`${gateway.url}/download`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url, ...(quality ? { quality } : {}) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

const ID = 'jNQXAC9IVRw';

describe('POST /download with YouTube URL forms', () => {
  it('when one video is submitted in eleven URL forms yt-dlp accepts, then there is one job and ten cache hits', async () => {
    const forms = [
      `https://www.youtube.com/watch?v=${ID}`,
      `https://youtu.be/${ID}?si=share`,
      `https://www.youtubekids.com/watch?v=${ID}`,
      `https://de.youtube.com/watch?v=${ID}&t=30`,
      `https://youtube.googleapis.com/v/${ID}`,
      `https://www.youtube.com/watch_popup?v=${ID}`,
      `https://www.youtube.com/#!v=${ID}`,
      `https://www.youtube.com/#/watch?v=${ID}`,
      `https://www.youtube.com/watch?feature=player_embedded&amp;v=${ID}`,
      `https://www.youtube.com/watch?v=${ID}extra`,
      `https://yewtu.be/watch?v=${ID}&list=PLsyOSbh5bs16vubvKePAQ1x3PhKavfBIl`,
    ];
    const first = await post(forms[0]!, '720p');
    expect(first.status).toBe(202);
    expect(first.body.id).toBe(`${ID}_720p`);
    for (const url of forms.slice(1)) {
      const res = await post(url, '720p');
      expect({ url, status: res.status, id: res.body.id, hit: res.body.cache_hit }).toEqual({
        url,
        status: 200,
        id: `${ID}_720p`,
        hit: true,
      });
    }
    expect(await redis.keys('job:*')).toEqual([`job:${ID}_720p`]);
  });

  it.each([
    ['https://www.youtube.com/embed/videoseries?list=PL6IaIsEjSbf96XFRuNccS_RuEXwNdsoEu', 'playlist'],
    [`https://www.youtube.com/embed/${ID}?list=PLsyOSbh5bs16vubvKePAQ1x3PhKavfBIl`, 'playlist'],
    ['https://www.youtube.com/playlist?list=PLsyOSbh5bs16vubvKePAQ1x3PhKavfBIl', 'playlist'],
    ['https://www.youtube.com/embed/live_stream?channel=UC2_KI6RB__jGdlnK6dvFEZA', 'channel'],
    ['https://www.youtube.com/@handle/videos', 'channel'],
    ['https://www.youtube.com/results?search_query=cats', 'search'],
    ['https://www.youtube.com/', 'feed'],
  ])('when %s is submitted, then it is a 400 url.playlist (%s) and no job', async (url, list) => {
    const before = (await redis.keys('job:*')).sort();
    const res = await post(url);
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'url.playlist', details: { list } });
    expect(res.body.error.message).toMatch(/submit the URL of a single video/);
    expect((await redis.keys('job:*')).sort()).toEqual(before);
  });

  it.each([
    ['https://www.youtube.com/watch?v=N_708QY7Ob', 'url.not_a_video'],
    ['https://www.youtube.com/watch?feature=foo', 'url.not_a_video'],
    [`https://user:secret@www.youtube.com/watch?v=${ID}`, 'download.invalid_url'],
    [`https://www.youtube.com@evil.example/watch?v=${ID}`, 'download.invalid_url'],
  ])('when %s is submitted, then it is a 400 %s', async (url, code) => {
    const res = await post(url);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe(code);
  });

  it('when a URL carries a video id but yt-dlp would not take it as a YouTube video, then its id is the hash of the URL', async () => {
    // An address literal: no DNS look-up, and a host none of yt-dlp's YouTube patterns names.
    const res = await post(`https://203.0.113.7/watch?v=${ID}`);
    expect(res.status).toBe(202);
    expect(res.body.id).toMatch(/^u[0-9a-f]{16}_best$/);
  });
});
