/**
 * Foundation: a real `pulumi up` / `preview` / `refresh` / `destroy` of a stack with a trivial
 * dynamic resource, through the bootstrapped CLI, the dynamic-provider plugin and the local
 * file backend.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { runCli, runId } from "../support/cli";

const program = ".cache/test-dist/test/support/markerFileProgram.js";

describe("Pulumi toolchain on the local file backend", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-toolchain-"));
  const file = path.join(dir, "marker.txt");
  const stack = `toolchain-${runId()}`;
  const base = ["--program", program, "--project", "toolchain", "--stack", stack, "--quiet", "--json"];

  afterAll(async () => {
    await runCli(["stack", "destroy", ...base]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("up creates, preview is clean, refresh sees drift, destroy removes", async () => {
    let t = Date.now();
    const up = await runCli(["stack", "up", ...base, "--config", `path=${file}`, "--config", "content=v1"]);
    expect(up.stderr).toBe("");
    expect(up.code).toBe(0);
    console.log(`pulumi up: ${Date.now() - t} ms`);
    expect(up.json.summary).toEqual({ result: "succeeded", resourceChanges: { create: 2 } });
    expect(fs.readFileSync(file, "utf8")).toBe("v1");
    expect(up.json.outputs).toEqual({ path: file, content: "v1" });

    const preview = await runCli(["stack", "preview", ...base]);
    expect(preview.code).toBe(0);
    expect(preview.json.changeSummary).toEqual({ same: 2 });

    // Drift outside Pulumi: refresh must read the resource and notice.
    fs.writeFileSync(file, "edited by hand");
    const refresh = await runCli(["stack", "refresh", ...base]);
    expect(refresh.code).toBe(0);
    expect(refresh.json.summary.resourceChanges).toEqual({ same: 1, update: 1 });
    // Now the desired state differs from what refresh recorded: preview plans an update.
    const preview2 = await runCli(["stack", "preview", ...base]);
    expect(preview2.json.changeSummary).toEqual({ same: 1, update: 1 });

    t = Date.now();
    const destroy = await runCli(["stack", "destroy", ...base]);
    expect(destroy.code).toBe(0);
    console.log(`pulumi destroy: ${Date.now() - t} ms`);
    expect(destroy.json.summary.resourceChanges).toEqual({ delete: 2 });
    expect(fs.existsSync(file)).toBe(false);
  });
});
