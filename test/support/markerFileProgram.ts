/** Inline program for the toolchain test: one MarkerFile at config `path` with config `content`. */
import * as pulumi from "@pulumi/pulumi";
import { MarkerFile } from "./markerFileResource";

export async function program() {
  const cfg = new pulumi.Config();
  const f = new MarkerFile("marker", { path: cfg.require("path"), content: cfg.require("content") });
  return { path: f.path, content: f.content };
}
