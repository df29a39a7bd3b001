// Limits on the data plane: circuit breaker thresholds and per-identity rate limits.
export { CircuitBreaker, type CircuitBreakerOptions, type CircuitBreakerKind } from './circuit-breaker.js';
export { RateLimiter, type RateLimiterOptions } from './rate-limiter.js';
export { LimitsConfigError } from './errors.js';
