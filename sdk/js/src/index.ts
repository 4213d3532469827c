export { HeraldError } from "./errors.js";
export {
  Publisher,
  type BatchEvent,
  type ChannelInfo,
  type HistoryEvent,
  type HistoryPage,
  type Published,
  type PublisherOptions,
  type PublishOptions,
  type RetryOptions,
  type Token,
  type TokenRequest,
} from "./publisher.js";
export {
  subscribe,
  type CursorStore,
  type EventMeta,
  type EventSourceConstructor,
  type EventSourceLike,
  type Gap,
  type Handler,
  type Status,
  type SubscribeOptions,
  type Subscription,
  type TokenResult,
  type VisibilitySource,
} from "./subscribe.js";
