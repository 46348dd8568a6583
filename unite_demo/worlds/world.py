"""A world: a bundle of experts in one image space, the one generation entry point of the CLI, the
page and the benchmark: request -> conditions -> product of experts -> sampler -> frames.
unite_demo.worlds.registry lists and loads every world."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from unite_demo.limits import DEFAULTS
from unite_demo.method.combine import PLAIN, GuidanceOptions, ProductOfExperts, ProductStrip
from unite_demo.method.experts import Expert
from unite_demo.method.sampler import SAMPLERS, Frame, alpha_bar_window, sample, step_alpha_bars
from unite_demo.worlds.conditions import Request, make_request
from unite_demo.worlds.modalities import MODALITIES, by_keyword


@dataclass
class World:
    """A set of experts in one image space, with the master noise schedule they are sampled on."""

    name: str
    experts: list[Expert]  # the product's experts, one per modality
    image_size: int
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    baselines: dict[str, Expert] = field(default_factory=dict)  # e.g. the jointly trained model
    cards: dict[str, dict] = field(default_factory=dict)  # training records from the weights' metadata
    palette: tuple[tuple[str, ...], np.ndarray] | None = None  # the seg expert's (class names, (K,3) colours)
    class_names: tuple[str, ...] = ()  # the "class" expert's classes, by id (worlds with one)
    defaults: dict = field(default_factory=dict)  # sampling defaults where they differ from limits.DEFAULTS
    subject: str = "face"  # what it draws, for the notes
    final_stage: Callable[[torch.Tensor], torch.Tensor] | None = None  # final image -> a larger, cleaner one
    guidance_options: GuidanceOptions = PLAIN  # how the guidance term acts (combine.REMEDIES)
    device: torch.device = torch.device("cpu")  # where the networks and x_t live (the noise is drawn on the CPU)
    encode_text: Callable[[list[str]], torch.Tensor] | None = None  # captions -> the text expert's condition
    # caption -> None where the text expert's reading understands it, else what that reading reads, in words: the
    # caption is then left out, with a note (None: the text expert reads any caption, as CLIP does)
    caption_doubt: Callable[[str], str | None] | None = None
    encoders: dict[str, Callable] = field(default_factory=dict)  # modality -> (value, world) -> its condition,
    # where this world's experts read it otherwise than the modality's own tensor (worlds.modalities)

    unloaded: tuple[str, ...] = ()  # the modalities it had when its networks were dropped (unload)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.experts) or self.unloaded

    def sampling_defaults(self) -> dict:
        """Steps, guidance, seed and sampler when a request does not say: limits.DEFAULTS, with this world's own."""
        return {k: v for k, v in {**DEFAULTS, **self.defaults}.items() if k not in ("reliability", "remedy")}

    def default_reliability(self) -> dict[str, float]:
        """Each modality's reliability when a request does not say: limits.DEFAULTS, or this world's own."""
        return dict(self.defaults.get("reliability", DEFAULTS["reliability"]))

    def request(self, inputs: dict | None = None, *, from_page: bool = False, **given) -> Request:
        """Validate the inputs of one run for this world (conditions.make_request): `inputs` by modality
        name, or each modality's input by its keyword (worlds.modalities: seg=, sketch=, text=,
        class_name=), with the sampling settings (reliability, guidance, steps, seed, sampler, superres;
        not given: the world's defaults; reliability_maps=, windows=: make_request's). from_page: the
        inputs are the page's widget values."""
        keywords = by_keyword()
        inputs = {**(inputs or {}), **{keywords[k].name: v for k, v in given.items() if k in keywords}}
        if not from_page:  # None: not given (the page's empty widgets are read, for their notes)
            inputs = {m: v for m, v in inputs.items() if v is not None}
        settings = {k: v for k, v in given.items() if k not in keywords}

        def read(name, value):
            modality = MODALITIES[name]
            return (modality.from_page if from_page else modality.read)(value, self)

        defaults = {**{m: MODALITIES[m].default_reliability for m in self.modalities}, **self.default_reliability()}
        return make_request(self.image_size, self.modalities, inputs, read=read, samplers=SAMPLERS,
                            default_reliability=defaults, subject=self.subject,
                            known=tuple(MODALITIES), **{**self.sampling_defaults(), **settings})

    def read_caption(self, text: str | None) -> dict[str, tuple[str, float]]:
        """What the caption head of an expert takes from a caption: {attribute: (value, probability)}
        for the attributes it reads as mentioned; {} without a caption or a caption head."""
        heads = [e.denoiser for e in self.experts if MODALITIES.get(e.name) is not None
                 and MODALITIES[e.name].widget == "caption" and hasattr(e.denoiser, "read_caption")]
        if not text or not heads or self.encode_text is None:
            return {}
        return heads[0].read_caption(self.encode_text([text]))

    def unload(self) -> None:
        """Drop the networks (the pretrained worlds free GPU memory here); the world cannot generate after."""
        self.unloaded, self.experts, self.baselines = self.modalities, [], {}

    def warm_up(self) -> None:
        """Two short generations with every expert taking part, so that the first user request pays no
        start-up costs (the networks are exported or traced on their first call and settle on their second)."""
        inputs = {m: MODALITIES[m].example(self) for m in self.modalities}
        for _ in range(2):
            for _ in self.generate(self.request(inputs, steps=2)):
                pass

    def mixture(self, req: Request, batched: bool = True) -> ProductOfExperts:
        """The product of this world's experts with the request's reliabilities (maps and windows too)
        and guidance."""
        return ProductOfExperts(self.experts, batched=batched, options=self.guidance_options,
                                **self.product_settings(req))

    def product_settings(self, req: Request) -> dict:
        """The request's reliabilities, maps, windows and guidance as ProductOfExperts reads them: the
        maps as they are (the product resamples them to its grid), each window over the steps as the
        alpha_bar interval of this run's steps (sampler.alpha_bar_window); an expert whose window holds
        none of the steps counts as r = 0."""
        reliability, windows = dict(req.reliability), {}
        if req.windows:
            schedule = {k: v for k, v in self.schedule().items() if k not in ("preview", "final")}
            alpha_bars = step_alpha_bars(req.steps, req.sampler, **schedule)
            for m, window in req.windows.items():
                interval = alpha_bar_window(window, alpha_bars)
                if interval is None:
                    reliability[m] = 0.0
                else:
                    windows[m] = interval
        return {"reliability": reliability, "guidance": req.guidance, "maps": dict(req.reliability_maps),
                "windows": windows}

    def generate(self, req: Request, batched: bool = True, conflict: bool = False) -> Iterator[Frame]:
        """Frames of one run: an x0 preview per step, then the final image (batch 1), through the
        world's final-image stage when it has one and the request wants it (conflict: generate_strip)."""
        return self.generate_strip([req], batched, conflict)

    def generate_strip(self, reqs: Sequence[Request], batched: bool = True, conflict: bool = False
                       ) -> Iterator[Frame]:
        """Frames of several runs side by side, one batch row per request, every row from the same
        starting noise (the explain view's strips): row b equals the run of reqs[b] alone. The requests
        may differ in conditions, reliabilities and guidance, not in seed, steps, sampler or superres.
        conflict: each step's Frame carries the experts' conflict_map (B, h, w) on the experts' grid."""
        if not self.experts:
            raise RuntimeError(f"the {self.name} world was unloaded; load it again")
        first = reqs[0]
        shared = ("seed", "steps", "sampler", "superres")
        differ = [k for k in shared if any(getattr(r, k) != getattr(first, k) for r in reqs)]
        if differ:
            raise ValueError(f"the runs of a strip must share {', '.join(shared)}; they differ in {differ}")
        mixtures = [self.mixture(r, batched) for r in reqs]
        for mixture in mixtures:
            mixture.keep_conflict = conflict
        denoiser = mixtures[0] if len(reqs) == 1 else ProductStrip(mixtures, [self.conditions(r) for r in reqs])
        cond = self.conditions(first) if len(reqs) == 1 else {}
        gen = torch.Generator().manual_seed(first.seed)
        for frame in sample(denoiser, cond, (1, *self.sample_shape), steps=first.steps, sampler=first.sampler,
                            generator=gen, copies=len(reqs), device=self.device, **self.schedule()):
            if conflict and not frame.done:
                frame = replace(frame, conflict=torch.cat([m.last_conflict.cpu() for m in mixtures]))
            if frame.done and first.superres and self.final_stage is not None:
                with torch.inference_mode():  # one image at a time: its uint8 filters would turn the float
                    # differences of another batch size into a level or two at a few pixels
                    frame = replace(frame, image=torch.cat([self.final_stage(x[None]) for x in frame.image]))
            yield frame

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One x_t's shape: (C, H, W)."""
        return 3, self.image_size, self.image_size

    def conditions(self, req: Request) -> dict[str, torch.Tensor]:
        """The request's conditions as the experts read them, batch 1, on the world's device."""
        return {m: (self.encoders.get(m) or MODALITIES[m].tensor)(v, self).to(self.device)
                for m, v in req.values.items()}

    def schedule(self) -> dict:
        """sample()'s noise schedule and image-making arguments for this world."""
        return {"num_train_timesteps": self.num_train_timesteps, "beta_schedule": self.beta_schedule}
