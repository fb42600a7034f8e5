import { describe, expect, it } from 'vitest';
import { canonicalUrl, downloadJobId, mediaId, sha256Hex, youtubeVideoId } from '@media-jobs/libs';

const ID = 'dQw4w9WgXcQ';

describe('youtubeVideoId', () => {
  it.each([
    `https://www.youtube.com/watch?v=${ID}`,
    `https://youtube.com/watch?v=${ID}&t=42s&list=PL123`,
    `http://m.youtube.com/watch?feature=share&v=${ID}`,
    `https://music.youtube.com/watch?v=${ID}&si=abc`,
    `https://youtu.be/${ID}`,
    `https://youtu.be/${ID}?si=xyz&t=3`,
    `https://www.youtube.com/shorts/${ID}`,
    `https://youtube.com/shorts/${ID}?feature=share`,
    `https://www.youtube.com/embed/${ID}?start=10`,
    `https://www.youtube-nocookie.com/embed/${ID}`,
    `https://www.youtube.com/live/${ID}?si=1`,
    `https://www.youtube.com/v/${ID}`,
    `HTTPS://WWW.YOUTUBE.COM/watch?v=${ID}#t=1`,
  ])('when the URL is %s, then the id is the 11-character video id', (url) => {
    expect(youtubeVideoId(new URL(url))).toBe(ID);
    expect(mediaId(new URL(url))).toBe(ID);
  });

  it.each([
    'https://www.youtube.com/watch?v=short',
    'https://www.youtube.com/channel/UC1234567890',
    'https://example.com/watch?v=dQw4w9WgXcQ',
    'https://notyoutube.com/shorts/dQw4w9WgXcQ',
  ])('when the URL is %s, then it is not a YouTube video', (url) => {
    expect(youtubeVideoId(new URL(url))).toBeNull();
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
