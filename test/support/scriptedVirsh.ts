/**
 * A scripted virsh for unit tests: each call's argv is matched against rules in order; the first
 * rule whose pattern matches answers (stdout, or a libvirt-style error). Every call is recorded,
 * so tests can assert the exact argv the backend sent.
 */
import type { VirshResult, VirshRunner } from "../../hypervisor/libvirt/virsh";
import { VirshError } from "../../hypervisor/libvirt/virsh";

export interface VirshCall {
  uri: string;
  args: string[];
}

type Answer = string | { error: string } | ((call: VirshCall) => string | { error: string } | Promise<string | { error: string }>);

interface Rule {
  match: (string | RegExp)[];
  answer: Answer;
  uri?: string;
}

export class ScriptedVirsh implements VirshRunner {
  readonly calls: VirshCall[] = [];
  private rules: Rule[] = [];

  /** Answer calls whose argv starts with `match` (strings exact, RegExps tested). */
  on(match: (string | RegExp)[], answer: Answer, uri?: string): this {
    this.rules.push({ match, answer, uri });
    return this;
  }

  async run(uri: string, args: string[]): Promise<VirshResult> {
    const call = { uri, args: [...args] };
    this.calls.push(call);
    const rule = this.rules.find(
      (r) => (r.uri === undefined || r.uri === uri) && r.match.every((m, i) => (typeof m === "string" ? args[i] === m : m.test(args[i] ?? ""))),
    );
    if (!rule) throw new VirshError(uri, args, `scripted virsh: no rule for: ${args.join(" ")}`, 1);
    const a = typeof rule.answer === "function" ? await rule.answer(call) : rule.answer;
    if (typeof a === "object") throw new VirshError(uri, args, a.error, 1);
    return { stdout: a, stderr: "" };
  }

  /** The argv of every call whose first word is `command`. */
  argsOf(command: string): string[][] {
    return this.calls.filter((c) => c.args[0] === command).map((c) => c.args);
  }
}
