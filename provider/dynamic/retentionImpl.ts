/**
 * Kept for saved stacks: Pulumi state written by protected-vm 0.1 records this module's compiled
 * path (dist/provider/dynamic/retentionImpl.js) in its serialized dynamic provider, and refresh/destroy
 * of such a stack require it. The logic lives in pulumi/providers/retentionImpl.ts.
 */
export * from "../../pulumi/providers/retentionImpl";
