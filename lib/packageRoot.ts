import * as fs from "fs";
import * as path from "path";

/** The package root (the folder with package.json), from the TypeScript sources and from dist/ alike. */
export const PACKAGE_ROOT = (() => {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, "package.json"))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find package.json above ${__dirname}`);
    dir = up;
  }
  return dir;
})();
