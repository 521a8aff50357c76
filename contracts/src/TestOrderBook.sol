// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

// Structs and events exactly as in Raindex IOrderBookV4 (no indexed parameters), so the logs
// this test double emits have the production topic0 values and encodings.

struct IO {
    address token;
    uint8 decimals;
    uint256 vaultId;
}

struct EvaluableV3 {
    address interpreter;
    address store;
    bytes bytecode;
}

struct OrderV3 {
    address owner;
    EvaluableV3 evaluable;
    IO[] validInputs;
    IO[] validOutputs;
    bytes32 nonce;
}

struct SignedContextV1 {
    address signer;
    uint256[] context;
    bytes signature;
}

struct TakeOrderConfigV3 {
    OrderV3 order;
    uint256 inputIOIndex;
    uint256 outputIOIndex;
    SignedContextV1[] signedContext;
}

struct ClearConfig {
    uint256 aliceInputIOIndex;
    uint256 aliceOutputIOIndex;
    uint256 bobInputIOIndex;
    uint256 bobOutputIOIndex;
    uint256 aliceBountyVaultId;
    uint256 bobBountyVaultId;
}

struct ClearStateChange {
    uint256 aliceOutput;
    uint256 bobOutput;
    uint256 aliceInput;
    uint256 bobInput;
}

interface IERC20Minimal {
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @title TestOrderBook
/// @notice Test double of the Raindex OrderBook. There is no order evaluation: the caller states
/// the amounts. Tokens really move between the order owners (who approve this contract), the
/// taker and the clearer, and the events are the production ones, emitted the way production
/// emits them (TakeOrderV2 from the taker's side; ClearV2 then AfterClear in the same call).
contract TestOrderBook {
    event ClearV2(address sender, OrderV3 alice, OrderV3 bob, ClearConfig clearConfig);
    event AfterClear(address sender, ClearStateChange clearStateChange);
    event TakeOrderV2(address sender, TakeOrderConfigV3 config, uint256 input, uint256 output);

    /// @notice Take one order. `orderInput`/`orderOutput` are the ORDER's amounts: the taker pays
    /// `orderInput` of the order's input token to the owner and receives `orderOutput` of the
    /// order's output token. The event reports them from the taker's side.
    function takeOrder(TakeOrderConfigV3 calldata config, uint256 orderInput, uint256 orderOutput)
        external
    {
        _take(config, orderInput, orderOutput);
    }

    /// @notice Several takes in one transaction (arrays of equal length).
    function takeOrders(
        TakeOrderConfigV3[] calldata configs,
        uint256[] calldata orderInputs,
        uint256[] calldata orderOutputs
    ) external {
        require(
            configs.length == orderInputs.length && configs.length == orderOutputs.length,
            "TestOrderBook: length mismatch"
        );
        for (uint256 i = 0; i < configs.length; i++) {
            _take(configs[i], orderInputs[i], orderOutputs[i]);
        }
    }

    /// @notice Clear alice against bob with caller-given amounts (this is a test double).
    function clear(
        OrderV3 calldata alice,
        OrderV3 calldata bob,
        ClearConfig calldata clearConfig,
        ClearStateChange calldata clearStateChange
    ) external {
        _clear(alice, bob, clearConfig, clearStateChange);
    }

    /// @notice Several clears in one transaction (arrays of equal length), each emitting
    /// ClearV2 then AfterClear.
    function clearMany(
        OrderV3[] calldata alices,
        OrderV3[] calldata bobs,
        ClearConfig[] calldata clearConfigs,
        ClearStateChange[] calldata clearStateChanges
    ) external {
        uint256 n = alices.length;
        require(
            bobs.length == n && clearConfigs.length == n && clearStateChanges.length == n,
            "TestOrderBook: length mismatch"
        );
        for (uint256 i = 0; i < n; i++) {
            _clear(alices[i], bobs[i], clearConfigs[i], clearStateChanges[i]);
        }
    }

    function _take(TakeOrderConfigV3 calldata config, uint256 orderInput, uint256 orderOutput)
        private
    {
        address owner = config.order.owner;
        address inputToken = config.order.validInputs[config.inputIOIndex].token;
        address outputToken = config.order.validOutputs[config.outputIOIndex].token;
        if (orderInput > 0) {
            _pull(inputToken, msg.sender, owner, orderInput);
        }
        if (orderOutput > 0) {
            _pull(outputToken, owner, msg.sender, orderOutput);
        }
        emit TakeOrderV2(msg.sender, config, orderOutput, orderInput);
    }

    function _clear(
        OrderV3 calldata alice,
        OrderV3 calldata bob,
        ClearConfig calldata cfg,
        ClearStateChange calldata change
    ) private {
        require(alice.owner != bob.owner, "TestOrderBook: same owner");
        address aliceOut = alice.validOutputs[cfg.aliceOutputIOIndex].token;
        address aliceIn = alice.validInputs[cfg.aliceInputIOIndex].token;
        require(aliceOut == bob.validInputs[cfg.bobInputIOIndex].token, "TestOrderBook: token mismatch");
        require(aliceIn == bob.validOutputs[cfg.bobOutputIOIndex].token, "TestOrderBook: token mismatch");
        require(change.aliceOutput >= change.bobInput, "TestOrderBook: alice output < bob input");
        require(change.bobOutput >= change.aliceInput, "TestOrderBook: bob output < alice input");

        _split(aliceOut, alice.owner, bob.owner, change.bobInput, change.aliceOutput - change.bobInput);
        _split(aliceIn, bob.owner, alice.owner, change.aliceInput, change.bobOutput - change.aliceInput);

        emit ClearV2(msg.sender, alice, bob, cfg);
        emit AfterClear(msg.sender, change);
    }

    /// Move `amount` of `token` from `from` to `to`, and `bounty` from `from` to the clearer.
    function _split(address token, address from, address to, uint256 amount, uint256 bounty) private {
        if (amount > 0) {
            _pull(token, from, to, amount);
        }
        if (bounty > 0) {
            _pull(token, from, msg.sender, bounty);
        }
    }

    function _pull(address token, address from, address to, uint256 amount) private {
        require(IERC20Minimal(token).transferFrom(from, to, amount), "TestOrderBook: transfer failed");
    }
}
