// Streams a chat completion from sax-gateway's OpenAI-compatible API with the official
// `openai` npm package, and prints one JSON line per chunk, then the joined text.
// Usage: node examples/openai/stream.mjs http://localhost:8888/v1 MODEL [PROMPT]
import OpenAI from "openai";

const [baseURL, model, prompt = "Hello"] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: prompt }],
  stream: true,
  stream_options: { include_usage: true },
});
let text = "";
for await (const chunk of stream) {
  const choice = chunk.choices[0];
  if (choice) {
    text += choice.delta.content ?? "";
    console.log(JSON.stringify({ delta: choice.delta.content ?? null, finish: choice.finish_reason }));
  } else {
    console.log(JSON.stringify({ usage: chunk.usage }));
  }
}
console.log(JSON.stringify({ text }));
