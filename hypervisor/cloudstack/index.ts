/** Public surface of the CloudStack backend. */
export { CloudStackBackend, mapVmState } from "./backend";
export type { CloudStackBackendOptions, CloudStackRestoreResult } from "./backend";
export { CloudStackClient, describeParams } from "./client";
export type { CloudStackClientOptions, CloudStackLogger, AsyncResult, CallOptions } from "./client";
export { CloudStackError, API_ERROR_CODES, hintFor, isCloudStackError } from "./errors";
export type { ErrorCode, LocalErrorCode } from "./errors";
export {
  CLOUDSTACK_ENV,
  CloudStackConfigError,
  loadCloudStackConfig,
  redactedConfig,
  resolveCloudStackConfig,
  validateCloudStackConfig,
} from "./config";
export type { CloudStackConfig, CloudStackConfigInput } from "./config";
export { planRecovery, isStorageFailure, judgeSourceHost, recoveryStateOf, RecoveryRefusedError } from "./recovery";
export type { CloudStackRestoreOptions, RecoveryFacts, RecoveryPath, RecoveryPlan, SourceHostVerdict } from "./recovery";
export { toCloudStackSnapshotPolicy } from "./snapshotPolicy";
export type { CloudStackSnapshotPolicyParams, PolicyMappingOptions, SnapshotPolicyMapping } from "./snapshotPolicy";
export { commandKind, isRetryable, DEFAULT_RETRY_POLICY } from "./retry";
export type { RetryPolicy, CommandKind } from "./retry";
export { computeSignature, canonicalString, signRequest } from "./signing";
