// The egress proxy lives in libs: the gateway's /probe runs yt-dlp behind it too.
export {
  startEgressProxy,
  type EgressProxy,
  type EgressProxyOptions,
  type EgressRefusal,
} from '@media-jobs/libs';
