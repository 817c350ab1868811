export { JwtAuthenticator, type JwtAuthenticatorOptions, type KeySetState } from './authenticator.ts';
export { KeyRegistry, type KeyRegistryOptions } from './key-registry.ts';
export { JwksSource, type JwksEvent, type JwksSourceOptions, type JwksSourceStats } from './jwks-source.ts';
export { KeySet, JwksError, JWT_ALGORITHMS, type JwtAlgorithm, type JwtKey } from './key-set.ts';
export { decodeToken, verifyToken, verifyTokenAsync, audiencesOf, JwtError, ENVOY_MESSAGES, CLOCK_SKEW_SECONDS, MAX_TOKEN_LENGTH, type DecodedJwt, type HeaderCache, type JwtFailure } from './verify.ts';
export { upstreamEdits, type UpstreamEdits } from './forwarding.ts';
