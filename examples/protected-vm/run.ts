// Entry point for `pulumi up` with a Pulumi.yaml: exports the program's outputs as stack outputs.
import { program } from "./index";
export = program();
