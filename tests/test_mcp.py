"""The studio as an MCP tool: `python app.py` (launch_options' mcp_server=True) on a free localhost
port serves /generate, described by app.py's generate() docstring, to MCP clients at
/gradio_api/mcp/ (streamable HTTP) and /gradio_api/mcp/sse (SSE), and lists it at
/gradio_api/mcp/schema. Driven with the `mcp` package's own client, as an MCP client would (README,
"Use it from an MCP client")."""

import asyncio
import json
import re
import urllib.request

import pytest
from gradio_client import Client

import gradio_adapters

from scripts.media import serve

pytestmark = pytest.mark.slow

PARAMETERS = {"seg", "sketch", "text", "seg_on", "sketch_on", "text_on", "r_seg", "r_sketch", "r_text", "seed",
              "steps", "guidance", "sampler", "world", "class_name", "r_class", "superres", "view", "sweep",
              "sweep_values"}  # /generate's (tests/test_app.py), as the tool's arguments


@pytest.fixture(scope="module")
def server():
    """app.py as it launches; GRADIO_MCP_SERVER unset, so only launch_options turns the MCP server on."""
    with serve(env={"GRADIO_MCP_SERVER": None}) as url:
        yield url


def test_launch_options_turn_the_mcp_server_on_where_mcp_is_installed(monkeypatch, capsys):
    assert gradio_adapters.launch_options({})["mcp_server"] is True
    find_spec = gradio_adapters.importlib.util.find_spec
    monkeypatch.setattr(gradio_adapters.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mcp" else find_spec(name, *a))
    assert gradio_adapters.launch_options({})["mcp_server"] is False  # the page still starts, without MCP
    assert "MCP server off: the `mcp` package is missing" in capsys.readouterr().out


def test_the_schema_lists_generate_with_its_parameters_and_docstring(server):
    with urllib.request.urlopen(server + "gradio_api/mcp/schema", timeout=30) as r:
        tools = json.loads(r.read())
    assert [t["name"] for t in tools] == ["generate"]  # the page's private events are not tools
    (tool,) = tools
    assert tool["description"].startswith("Generate an image from a segmentation map, a sketch and a caption")
    props = tool["inputSchema"]["properties"]
    assert PARAMETERS <= set(props)
    assert props["text"]["type"] == "string" and props["seed"]["type"] == "integer"
    assert "cartoon-faces" in props["world"]["enum"]
    assert f"Streamable HTTP URL: {server}gradio_api/mcp/" in server.log()  # what gradio says at start
    # The MCP server adds no API endpoint: /generate stays the only public one.
    info = Client(server, verbose=False).view_api(return_format="dict", print_info=False)
    assert list(info["named_endpoints"]) == ["/generate"]


async def _session(server):
    """An MCP client session over streamable HTTP and one over SSE: their tools, and one run of generate."""
    from mcp import ClientSession
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(server + "gradio_api/mcp/") as (read, write, _):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = (await session.list_tools()).tools
            result = await session.call_tool("generate", {"text": "a smiling face with red hair", "seed": 0,
                                                          "steps": 2})
    async with sse_client(server + "gradio_api/mcp/sse") as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            sse_tools = (await session.list_tools()).tools
    return init, tools, result, sse_tools


def test_an_mcp_client_lists_generate_and_runs_it(server):
    init, tools, result, sse_tools = asyncio.run(_session(server))
    assert init.serverInfo.name == "Unite & Conquer studio"
    assert [t.name for t in tools] == [t.name for t in sse_tools] == ["generate"]
    assert PARAMETERS <= set(tools[0].inputSchema["properties"])
    assert not result.isError
    said = " ".join(c.text for c in result.content if c.type == "text")
    assert re.search(r"step 2 / 2 · done in [\d.]+ s", said), said[:2000]  # the final update, not a preview
    assert f"{server}gradio_api/file=" in said and "result.png" in said  # the run saved for slides, by URL
    assert "the text expert reads: hair colour: red, expression: smiling" in said
