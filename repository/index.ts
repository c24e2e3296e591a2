/** Snapshot repository: content-defined chunking, a deduplicating chunk store, verified manifests. */
export * from "./chunker";
export * from "./chunks";
export * from "./lock";
export * from "./manifest";
export * from "./repository";
