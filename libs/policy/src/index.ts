// @amime/policy: authorization: request path normalisation and ALLOW / DENY / AUDIT evaluation.
export {
  normalizePath, isNormalizedPath, isValidMethod, MAX_REQUEST_TARGET_LENGTH, PATH_REJECT_REASONS,
  type NormalizePathResult, type NormalizedPath, type RejectedPath, type NormalizePathOptions, type PathRejectReason,
} from './normalize-path.js';
export {
  Authorizer, PolicyError,
  type Decision, type DecisionReason, type AuthorizeTarget, type AuthorizeRequest, type AuthorizerOptions, type PolicyIssue,
} from './authorizer.js';
