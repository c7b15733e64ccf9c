"""make.sh's `mlserver` service: a user's own two models served by MLServer (custom MLModel runtimes).

`price` doubles its inputs, takes longer on a batch of more than three rows and fails on a negative one; `fraud` scores
transactions and fails on an empty one."""

import asyncio

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class PriceModel(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        rows = NumpyCodec.decode_input(payload.inputs[0])
        if (rows < 0).any():
            raise ValueError("a negative quantity")
        if rows.size > 3:
            await asyncio.sleep(0.5)
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("price", rows * 2.0)])


class FraudModel(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        amounts = NumpyCodec.decode_input(payload.inputs[0])
        if amounts.size == 0:
            raise ValueError("an empty transaction")
        scores = (amounts > 100).astype("float32")
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("score", scores)])
