import * as fs from "fs";

interface Props {
  path: string;
  content: string;
}

export async function create(inputs: Props) {
  fs.writeFileSync(inputs.path, inputs.content);
  return { id: inputs.path, outs: { path: inputs.path, content: inputs.content } };
}

export async function read(id: string, props: Props) {
  if (!fs.existsSync(id)) return { id: "", props: {} };
  return { id, props: { path: id, content: fs.readFileSync(id, "utf8") } };
}

export async function diff(_id: string, olds: Props, news: Props) {
  return {
    changes: olds.path !== news.path || olds.content !== news.content,
    replaces: olds.path !== news.path ? ["path"] : [],
  };
}

export async function update(_id: string, _olds: Props, news: Props) {
  fs.writeFileSync(news.path, news.content);
  return { outs: { path: news.path, content: news.content } };
}

export async function remove(id: string) {
  fs.rmSync(id, { force: true });
}
